"""The logged run: ``TrackedRun``, what jobs and detectors log through, and how a run ends.

``closing_run`` ends a run FINISHED, or FAILED with the error (tag ``error`` and ``traceback.txt``)
and the exception re-raised, or KILLED on Ctrl-C. In a distributed (DDP) job only rank 0 logs: the
other ranks get a ``SilentRun``. Runs are started by ``fid_bench.tracking.run_factory.start_run``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fid_bench import signals
from fid_bench.data.samples import LABEL_NAMES
from fid_bench.errors import first_line, user_error
from fid_bench.tracking.logged_values import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
    metric_value,
    param_text,
    safe_key,
    truncate,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from fid_bench.contract import Predictor
    from fid_bench.data.samples import Samples
    from fid_bench.tracking.lineage import DatasetPart

log = logging.getLogger(__name__)


class Report(Protocol):
    """A report a run logs as metrics and files (the data audit's ``AuditReport``)."""

    def metrics(self) -> Mapping[str, float]: ...

    def write(self, out_dir: Path) -> list[Path]: ...


class TrackedRun:
    """One MLflow run; what jobs and detectors log through (see ``detector.RunLogger``)."""

    def __init__(self, client: MlflowClient, run_id: str, experiment_id: str, name: str) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.name = name
        self._params: dict[str, str] = {}

    # ---- plain logging
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics; NaN is kept, None and non-numbers are skipped with a warning."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = []
        for key, value in metrics.items():
            number = metric_value(value)
            if number is None:
                log.warning("metric %s=%r is not a number; not logged", key, value)
                continue
            entries.append(Metric(safe_key(str(key)), number, now, int(step or 0)))
        for i in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=entries[i : i + MAX_METRICS_PER_BATCH])

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (stringified, truncated). A key already logged keeps its first value."""
        from mlflow.entities import Param

        fresh: dict[str, str] = {}
        for key, value in params.items():
            key, text = safe_key(str(key)), truncate(param_text(value), MAX_PARAM_VAL_LENGTH)
            if key in self._params:
                # MLflow params are immutable: a second value would fail the whole batch
                if self._params[key] != text:
                    log.warning("param %s already logged as %r; %r not logged", key, self._params[key], text)
                continue
            fresh[key] = text
        items = [Param(k, v) for k, v in fresh.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
        self._params.update(fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(safe_key(str(k)), truncate(str(v), MAX_TAG_VAL_LENGTH)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file, or a folder's contents, under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    # ---- fid_bench objects
    def log_samples(self, samples: Samples) -> None:
        """Counts per split and label, skipped rows (``skipped.csv``) and the data fingerprint."""
        table = samples.table
        counts: dict[str, float] = {"n_samples": len(table)}
        for split in ("train", "test"):
            for label in (0, 1):
                mask = (table["split"] == split) & (table["label"] == label)
                counts[f"n_{split}_{LABEL_NAMES[label]}"] = int(mask.sum())
        for (split, label), n in table.groupby(["split", "label"]).size().items():
            name = f"n_{split}_{LABEL_NAMES.get(int(label), label)}"
            counts.setdefault(name, int(n))
        counts["n_skipped"] = len(samples.skipped)
        counts["n_unreadable_predict"] = len(samples.unreadable_predict)
        self.log_metrics(counts)
        self.set_tags({"data_fingerprint": samples.fingerprint(), "data_name": samples.name})
        with tempfile.TemporaryDirectory() as tmp:
            if len(samples.skipped):
                path = Path(tmp) / "skipped.csv"
                samples.skipped.to_csv(path, index=False)
                self.log_artifact(path)
                log.warning("skipped %s; see skipped.csv", describe_skips(samples.skipped))
            if len(samples.unreadable_predict):
                path = Path(tmp) / "unreadable_predict.csv"
                samples.unreadable_predict.to_csv(path, index=False)
                self.log_artifact(path)
                log.warning(
                    "%d prediction rows have unreadable images (scored with the prior); "
                    "see unreadable_predict.csv",
                    len(samples.unreadable_predict),
                )

    def log_audit(self, report: Report, parts: Mapping[str, Report] | None = None) -> None:
        """The data audit before training: its metrics (``audit/*``) and the report as artifacts
        (``audit/``); ``parts``: the report of each source (``data=multi``), under ``audit/<source>/``."""
        self.log_metrics({f"audit/{k}": v for k, v in report.metrics().items()})
        with tempfile.TemporaryDirectory() as tmp:
            for path in report.write(Path(tmp)):
                self.log_artifact(path, "audit")
            for name, part in (parts or {}).items():
                self.log_metrics({f"audit/{name}/{k}": v for k, v in part.metrics().items()})
                for path in part.write(Path(tmp) / name):
                    self.log_artifact(path, f"audit/{name}")

    def log_datasets(self, parts: Sequence[DatasetPart]) -> None:
        """The rows a run used, as MLflow dataset inputs (see ``fid_bench.tracking.lineage``)."""
        from fid_bench.tracking.lineage import log_dataset_parts

        log_dataset_parts(self.client, self.run_id, parts)

    def log_predictions(self, scores: pd.DataFrame) -> None:
        """``predictions.csv``: the validation rows next to the test rows (``split`` tells them apart).

        The threshold was chosen on the validation rows, and a stacked ensemble learns its combiner on
        them later without touching a test label.
        """
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.csv"
            scores.to_csv(path, index=False)
            self.log_artifact(path)

    def log_predictor(self, predictor: Predictor) -> str:
        """Log the fitted model in MLflow format (artifact ``model``); returns its model URI."""
        from fid_bench.tracking.pyfunc import log_predictor_model  # imports mlflow's model flavours

        return log_predictor_model(predictor, self.run_id)

    # ---- lifecycle (used by closing_run)
    def _record_error(self, err: BaseException) -> None:
        try:
            # the user's error, not the wrapper around it (e.g. Hydra's InstantiationException)
            self.set_tags({"error": first_line(user_error(err) or err)})
            self.log_text("".join(traceback.format_exception(err)), "traceback.txt")
        except Exception as log_err:  # noqa: BLE001 - never hide the job's own error
            log.warning("could not record the error in MLflow run %s: %s", self.run_id, first_line(log_err))

    def _end(self, status: str) -> None:
        import mlflow

        try:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.run_id:
                mlflow.end_run(status)
            else:
                self.client.set_terminated(self.run_id, status)
        except Exception as err:  # noqa: BLE001 - never hide the job's own error
            log.error("could not close MLflow run %s as %s: %s", self.run_id, status, first_line(err))


def describe_skips(skipped: pd.DataFrame) -> str:
    """ "3 rows (2 truncated, 1 zero-byte)": reasons grouped by the text before their first colon."""
    n = len(skipped)
    rows = f"{n} row" + ("" if n == 1 else "s")
    if "reason" not in skipped.columns or n == 0:
        return rows
    kinds = skipped["reason"].astype(str).str.split(":", n=1).str[0].str.strip().replace("", "unknown")
    parts = [f"{count} {kind}" for kind, count in kinds.value_counts().items()]
    return f"{rows} ({', '.join(parts)})"


def distributed_rank() -> int:
    """This process's rank in a distributed job (0 when not distributed), from the launcher's env."""
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "0")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 0


class SilentRun:
    """The run a DDP worker of rank > 0 gets: every logging call does nothing (rank 0 logs the job)."""

    run_id = ""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@contextmanager
def closing_run(run: TrackedRun) -> Iterator[TrackedRun]:
    """End ``run`` on exit: FINISHED, FAILED with the error recorded and re-raised, or KILLED."""
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except BaseException as err:
        # Ctrl-C or SIGTERM (see fid_bench.signals); Lightning re-raises either as SystemExit
        if isinstance(err, KeyboardInterrupt) or signals.received() is not None:
            status = "KILLED"
        run._record_error(err)
        raise
    finally:
        run._end(status)

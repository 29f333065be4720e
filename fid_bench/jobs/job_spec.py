"""The job spec: what one benchmark job takes from its composed config, built once at the top.

``JobSpec.of_config(cfg)`` is the only place a job reads its Hydra config: it instantiates the
detector and the balance strategy, reads the settings of the run, evaluation, audit and folds into
plain values, and resolves every ``eval.extra`` set into the ``data`` node ``read_samples`` takes.
Everything below (``experiment``, the data, features, evaluation, audit and tracking layers) gets
these pieces, never ``cfg``. Bad values that need no data (extra sets, a shard given to an
ordinary job) fail here, in one line, before any run exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from fid_bench.data.job_inputs import ExtraSet
from fid_bench.data.splits import FoldPlan
from fid_bench.errors import FidBenchError
from fid_bench.evaluation.fit_and_score import Evaluation
from fid_bench.evaluation.held_out import HeldOutSettings
from fid_bench.tracking.job_run import JobRunSpec

if TYPE_CHECKING:
    from fid_bench.balance import BalanceStrategy
    from fid_bench.contract import Detector


@dataclass(frozen=True)
class JobSpec:
    """One job, as its config describes it (see the module docstring)."""

    #: the job's MLflow run: store, experiment, tags and the resolved config it logs
    run: JobRunSpec
    #: the ``data`` node (its ``reader`` and ``max_pixels``), read by ``read_samples``
    data: DictConfig
    #: ``data.root`` (None for the demo): the run's dataset source
    data_root: str | None
    #: ``data=multi``: the audit also reports each source on its own
    multi_source: bool
    detector: Detector
    balance: BalanceStrategy | None
    cache_dir: Path
    folds: FoldPlan
    #: held-out metrics, leave-one-group-out prefixes, perturbations, extra sets' re-encoding
    evaluation: Evaluation
    #: ``audit_samples`` keyword arguments when ``audit.enabled``, else None
    audit: dict[str, Any] | None
    extra: tuple[ExtraSet, ...]
    log_model: bool
    optimized_metric: str

    @classmethod
    def of_config(cls, cfg: DictConfig) -> JobSpec:
        """The spec of a composed config; ``eval.extra`` mistakes are one-line errors, and so is a
        shard of a split extraction (``features.shard``: its own entry point, ``jobs.shard_job``)."""
        from hydra.utils import instantiate

        from fid_bench.audit import audit_settings
        from fid_bench.contract import detector_track
        from fid_bench.features.shard import shard_requested

        detector = instantiate(cfg.classifier)
        extra = extra_sets(cfg)
        # each layer reads its own part, top to bottom: the run (tracking), the audit, the held-out
        # metrics (evaluation), the shard check (features), the folds (data)
        run = JobRunSpec.of_config(cfg, track=detector_track(detector))
        audit = audit_settings(cfg) if cfg.audit.enabled else None
        held_out = HeldOutSettings.of_config(cfg)
        if shard_requested(cfg):
            raise FidBenchError(
                "features.shard is set: a shard of a split extraction runs as its own job "
                "(python -m fid_bench ... features.shard=I features.num_shards=N), not through run_job"
            )
        folds = FoldPlan.of_config(cfg)
        return cls(
            run=run,
            data=cfg.data,
            data_root=OmegaConf.select(cfg, "data.root", default=None),
            multi_source=bool(OmegaConf.select(cfg, "data.sources", default=None)),
            detector=detector,
            balance=instantiate(cfg.balance),
            cache_dir=Path(cfg.features.cache_dir).expanduser(),
            folds=folds,
            evaluation=Evaluation(
                held_out=held_out,
                leave_one_group_out=folds.leave_one_group_out,
                perturb=tuple(str(p) for p in cfg.eval.perturb or ()),
                normalise_extra=dict(
                    OmegaConf.to_container(cfg.eval.normalise_extra or OmegaConf.create({}))
                ),
            ),
            audit=audit,
            extra=extra,
            log_model=bool(cfg.tracking.log_model),
            optimized_metric=str(cfg.optimized_metric),
        )


def extra_sets(cfg: DictConfig) -> tuple[ExtraSet, ...]:
    """Each ``eval.extra`` entry ``{name, data: folder|kaggle|demo, root, strict?, reader?}`` as the
    ``data`` node of its option, with ``root``, ``strict`` and reader settings applied and the job's
    ``data.max_pixels``; its interpolations (``${..root}``, ``${features.cache_dir}``) resolve in a
    small config of its own."""
    max_pixels = OmegaConf.select(cfg, "data.max_pixels", default=None)
    return tuple(extra_set(entry, cfg.features, max_pixels) for entry in cfg.eval.extra or ())


def extra_set(spec: DictConfig | dict[str, Any], features: Any, max_pixels: Any = None) -> ExtraSet:
    """One ``eval.extra`` entry as an ``ExtraSet`` (see ``extra_sets``)."""
    from fid_bench.config import load_option

    spec = OmegaConf.create(dict(spec)) if not isinstance(spec, DictConfig) else spec
    for key in ("name", "data", "root"):
        if key not in spec:
            raise FidBenchError(f"eval.extra entry {OmegaConf.to_container(spec)} lacks {key!r}")
    data_cfg = load_option("data", str(spec.data), what=f"eval.extra {spec.name!r}")
    data_cfg.root = str(spec.root)
    data_cfg.strict = bool(spec.get("strict", False))
    data_cfg.max_pixels = max_pixels  # the job's decode limit: read_samples sets it for the process
    # reader settings of the extra set, e.g. {reader: {confound: format_reversed}} for a demo set
    for key, value in (spec.get("reader") or {}).items():
        data_cfg.reader[key] = value
    features_node = OmegaConf.to_container(features) if isinstance(features, DictConfig) else dict(features)
    own = OmegaConf.create({"data": data_cfg, "features": features_node})
    return ExtraSet(name=str(spec.name), root=str(spec.root), data=own.data)

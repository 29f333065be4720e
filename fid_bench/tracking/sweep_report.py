"""``report.html``: one self-contained page per sweep, study or leave-one-group-out run.

What a person wants from a sweep, on one page that opens in MLflow's artifact viewer (no network,
no scripts; the figures are inline PNGs as base64 ``data:`` URIs):

* the leaderboard of the sweep's finished jobs, with the 95 % intervals and the ``~top`` marks of
  ``fid-bench leaderboard`` (DeLong + Holm against the best run on the same test rows);
* the ROC curves of the best runs overlaid (test rows);
* per-group ROC-AUC bars (generator / source groups: ``group/<name>/roc_auc``) of the best runs;
* the robustness plot of the best run, when it logged one (``eval.perturb``);
* the audit's warnings (from the best run's ``audit/audit.json``);
* the cost-quality frontier: ROC-AUC against feature-extraction speed per encoder
  (``extract/images_per_s``), logged beside the page as ``cost_quality.png`` and ``.csv``;
* the failed jobs and their one-line errors.

Metrics are shown to 4 decimals. ``log_sweep_report`` never raises: a sweep that finished must not
fail over its report (a warning says what went wrong).
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fid_bench.contract import FINETUNE_TRACK
from fid_bench.errors import FidBenchError, first_line
from fid_bench.tracking.leaderboard import (
    THROUGHPUT_COLUMN,
    Board,
    Query,
    add_top_marks,
    display_rows,
    leaderboard,
)
from fid_bench.tracking.run_queries import held_out_scores

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

REPORT = "report.html"
#: the cost-quality plot and its points, logged beside ``REPORT``
COST_QUALITY = "cost_quality.png"
COST_QUALITY_POINTS = "cost_quality.csv"
#: runs drawn in the ROC overlay and the per-group bars
TOP_DRAWN = 5

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f0f0f0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.top td { background: #eaf6ea; } .note { color: #555; font-size: 0.9em; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; } li.warn { color: #8a4b00; }
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool], top_col: int | None
) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        is_top = top_col is not None and row[top_col].strip() in ("top", "~")
        cells = "".join(
            f'<td class="num">{html.escape(c)}</td>' if num else f"<td>{html.escape(c)}</td>"
            for c, num in zip(row, numeric, strict=True)
        )
        body.append(f'<tr class="top">{cells}</tr>' if is_top else f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


#: per-group metric prefixes: the test rows of each group, and leave-one-group-out folds
GROUP_PREFIXES = {
    "group": "per group",
    "logo": "per held-out group (leave-one-group-out)",
    "loso": "per held-out source (leave-one-source-out)",
}


def _group_bars(
    runs: Sequence[tuple[str, dict[str, float]]], metric: str, out: Path, prefix: str = "group"
) -> Path | None:
    """Grouped bars of ``<prefix>/<g>/<metric>`` per run; None when no run logged such metrics."""
    groups = sorted(
        {
            k.split("/")[1]
            for _, m in runs
            for k in m
            if k.startswith(f"{prefix}/") and k.endswith(f"/{metric}")
        }
    )
    if not groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) + 2), 4))
    width = 0.8 / len(runs)
    x = np.arange(len(groups))
    for i, (label, metrics) in enumerate(runs):
        values = [metrics.get(f"{prefix}/{g}/{metric}", math.nan) for g in groups]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=label)
    ax.set_xticks(x, groups)
    ax.set_ylabel(f"{metric} (test rows of the group vs. the real ones)")
    ax.set_ylim(0, 1.02)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"{metric} {GROUP_PREFIXES.get(prefix, prefix)}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _download(client: MlflowClient, run_id: str, path: str, dst: Path) -> Path | None:
    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except Exception:  # noqa: BLE001 - an artifact the run did not log
        return None


def _audit_warnings(client: MlflowClient, run_id: str, tmp: Path) -> list[str] | None:
    local = _download(client, run_id, "audit/audit.json", tmp)
    if local is None:
        return None
    try:
        return [str(w) for w in json.loads(local.read_text()).get("warnings", [])]
    except (OSError, ValueError, AttributeError):
        return None


def auc_metric(metric: str) -> str:
    """The ROC-AUC the cost-quality plot shows: the sweep's metric when it is one, else ``roc_auc``."""
    return metric if metric.rsplit("/", 1)[-1].endswith("roc_auc") else "roc_auc"


def cost_quality_runs(boards: Sequence[Board], auc: str) -> tuple[pd.DataFrame, int, int]:
    """The ranked runs as ``cost_quality_png`` points (``encoder`` is the ``model`` tag, as on the
    leaderboard), the number of fine-tune runs left out (they extract no features) and of other runs
    left out for lacking ``auc`` or a logged ``extract/images_per_s``."""
    import pandas as pd

    rows, finetune, other = [], 0, 0
    for board in boards:
        for run in board.runs.itertuples():
            speed, value = run.metrics.get(THROUGHPUT_COLUMN), run.metrics.get(auc)
            if run.tags.get("track") == FINETUNE_TRACK:
                finetune += 1
            elif speed is None or value is None or math.isnan(value):
                other += 1
            else:
                rows.append({"encoder": run.model or run.run_name, "images_per_s": speed, "roc_auc": value})
    return pd.DataFrame(rows, columns=["encoder", "images_per_s", "roc_auc"]), finetune, other


def _cost_quality(boards: Sequence[Board], metric: str, tmp: Path, keep: Path | None) -> list[str]:
    """The report's cost-quality section: the plot when some run timed its extraction, else one line."""
    from fid_bench.evaluation.plots import cost_quality_png

    auc = auc_metric(metric)
    points, finetune, other = cost_quality_runs(boards, auc)
    left_out = []
    if finetune:
        left_out.append(f"{finetune} fine-tune run(s) left out (they extract no features)")
    if other:
        left_out.append(f"{other} run(s) without {auc} or a logged {THROUGHPUT_COLUMN} left out")
    if not (points["images_per_s"] > 0).any():
        line = "Cost and quality: no feature extraction was timed in this sweep, so no plot"
        return [f"<p class='note'>{html.escape('; '.join([line, *left_out]))}.</p>"]
    png = tmp / COST_QUALITY
    drawn = cost_quality_png(points, png, title=f"{auc} against extraction speed, per encoder")
    drawn = drawn.sort_values("images_per_s", ascending=False)
    if keep is not None:
        shutil.copyfile(png, keep / COST_QUALITY)
        drawn.rename(columns={"roc_auc": auc})[["encoder", "images_per_s", auc]].to_csv(
            keep / COST_QUALITY_POINTS, index=False
        )
    untimed = sorted(set(points["encoder"]) - set(drawn["encoder"]))
    if untimed:
        left_out.append(f"not drawn, never timed (every feature was cached): {', '.join(map(str, untimed))}")
    explain = (
        f"Each point is one encoder at its best {auc} among these runs against its median feature-"
        f"extraction speed ({THROUGHPUT_COLUMN}, log scale; runs that found every feature cached take "
        "their encoder's speed from the runs that extracted): pick from the encoders no other beats on "
        "both axes."
    )
    rows = [(str(r.encoder), f"{r.images_per_s:.1f}", f"{r.roc_auc:.4f}") for r in drawn.itertuples()]
    return [
        "<h2>Cost and quality per encoder</h2>",
        _img(png, "ROC-AUC against extraction speed"),
        f"<p class='note'>{html.escape(explain)}</p>",
        _table(["encoder", "images/s", f"best {auc}"], rows, [False, True, True], None),
        *(f"<p class='note'>{html.escape(line)}.</p>" for line in left_out),
    ]


def build_report(
    client: MlflowClient,
    runs: Sequence[Run] | None = None,
    *,
    parent: Run | None = None,
    metric: str = "roc_auc",
    failures: Sequence[tuple[str, str]] = (),
    keep: Path | None = None,
) -> str:
    """The report's HTML: the finished children of ``parent`` (or the given ``runs``) ranked by ``metric``.

    Plots meant to be logged beside the page as well (``COST_QUALITY``) are written into ``keep``."""
    from fid_bench.evaluation.plots import overlay_curves_png
    from fid_bench.tracking.compare import run_label

    title = parent.info.run_name if parent is not None else (runs[0].info.run_name if runs else "runs")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(str(title))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(str(title))}</h1>",
    ]
    with tempfile.TemporaryDirectory(prefix="fid_bench-report-") as tmp_name:
        tmp = Path(tmp_name)
        if parent is not None:
            try:
                boards = leaderboard(client, Query(metric=metric, top=0, parent=parent.info.run_id))
            except FidBenchError as err:  # e.g. every job failed: the failures are the report
                log.info("report: no leaderboard for run %s: %s", parent.info.run_id, err)
                boards = []
            add_top_marks(client, boards)
            ranked_ids = [rid for b in boards for rid in b.runs["run_id"]]
            by_id = {r.info.run_id: r for r in (client.get_run(i) for i in ranked_ids[:TOP_DRAWN])}
            parts.append(
                f"<p class='note'>run {parent.info.run_id} · {len(ranked_ids)} finished job(s), "
                f"{len(failures)} failed · ranked by {html.escape(metric)} on the test rows</p>"
            )
            parts.append("<h2>Leaderboard</h2>")
            for board in boards:
                header, rows, numeric = display_rows(board, show_status=False)
                top_col = header.index("~top") if "~top" in header else None
                if len(boards) > 1:
                    parts.append(f"<h3>{html.escape(board.experiment)}</h3>")
                parts.append(_table(header, rows, numeric, top_col))
                if board.marks is not None:
                    parts.append(f"<p class='note'>{html.escape(board.marks.footer())}</p>")
            best = [by_id[i] for i in ranked_ids[:TOP_DRAWN]]
            cost_quality = _cost_quality(boards, metric, tmp, keep) if ranked_ids else []
        else:
            best = list(runs or [])[:TOP_DRAWN]
            cost_quality = []  # one run: no frontier to pick from
        curves = {}
        for run in best:
            try:
                curves[run_label(run)] = held_out_scores(client, run)
            except FidBenchError as err:
                log.info("report: no curve for run %s: %s", run.info.run_id, err)
        if curves:
            png = tmp / "roc.png"
            overlay_curves_png(curves, png, title=f"{len(curves)} best run(s), test split")
            parts += ["<h2>ROC and precision-recall curves</h2>", _img(png, "ROC overlay")]
        for prefix, title in GROUP_PREFIXES.items():
            labelled = [(run_label(r), dict(r.data.metrics)) for r in best]
            bars = _group_bars(labelled, "roc_auc", tmp / f"{prefix}.png", prefix)
            if bars is not None:
                parts += [f"<h2>{html.escape(title.capitalize())}</h2>", _img(bars, f"ROC-AUC {title}")]
        if best:
            robustness = _download(client, best[0].info.run_id, "robustness/robustness.png", tmp)
            if robustness is not None:
                parts += [
                    f"<h2>Robustness of {html.escape(run_label(best[0]))}</h2>",
                    _img(robustness, "robustness"),
                ]
            warnings = _audit_warnings(client, best[0].info.run_id, tmp)
            if warnings is not None:
                items = (
                    "".join(f"<li class='warn'>{html.escape(w)}</li>" for w in warnings) or "<li>none</li>"
                )
                parts += ["<h2>Audit warnings</h2>", f"<ul>{items}</ul>"]
        parts += cost_quality
    if failures:
        items = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(e)}</li>" for n, e in failures)
        parts += ["<h2>Failed jobs</h2>", f"<ul>{items}</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def log_sweep_report(
    tracking_uri: str,
    run_id: str,
    *,
    metric: str = "roc_auc",
    failures: Sequence[tuple[str, str]] = (),
    children: bool = True,
) -> str | None:
    """Build the report of run ``run_id`` (its children with ``children``, else the run itself) and log
    it as its ``report.html``; returns the artifact path, or None (with a warning) when it failed."""
    from fid_bench.tracking.run_queries import open_store

    try:
        client = open_store(tracking_uri)
        run = client.get_run(run_id)
        with tempfile.TemporaryDirectory(prefix="fid_bench-report-") as keep:
            text = (
                build_report(client, parent=run, metric=metric, failures=failures, keep=Path(keep))
                if children
                else build_report(client, [run], metric=metric, failures=failures)
            )
            client.log_text(run_id, text, REPORT)
            for path in sorted(Path(keep).iterdir()):
                client.log_artifact(run_id, str(path))
    except Exception as err:  # noqa: BLE001 - a finished sweep must not fail over its report
        log.warning("no %s for run %s: %s", REPORT, run_id, first_line(err))
        return None
    log.info("report of run %s: artifact %s", run_id, REPORT)
    return REPORT

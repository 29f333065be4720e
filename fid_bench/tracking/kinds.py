"""What a run is: the ``fid_bench.kind`` tag every run fid_bench creates carries, and what follows from it.

One enum, and the sets derived from it once: which kinds the leaderboard ranks (scores on test
rows of their own), which of those hold a model (what ``predict`` and ``promote`` accept, and what
``predict --run best`` picks from), and which kinds only summarise other runs (never ranked, not
even among the children of a parent run). A run without the tag (logged by hand, or by an old
version) counts as a job.

This module imports nothing: every layer may read it.
"""

from __future__ import annotations

from enum import Enum

#: the tag naming a run's kind
KIND_TAG = "fid_bench.kind"
#: the MLflow model a job run logs (``runs:/<run id>/model``)
MODEL_NAME = "model"
#: the tags naming the data a run was scored on (copied to runs made from other runs' scores)
DATA_TAGS = ("data", "data_name", "data_fingerprint")


class RunKind(str, Enum):
    """The kinds of MLflow runs fid_bench writes (the value is the tag's text)."""

    JOB = "job"  # one detector fitted and evaluated; holds the model (a search's refit is a job too)
    PARENT = "parent"  # a Hydra multirun: summary of its child runs
    STUDY = "study"  # an Optuna study: the search's summary, parent of its trials
    TRIAL = "trial"  # one point of a search, evaluated on validation rows; no model kept
    COMPARISON = "comparison"  # ``fid-bench compare``'s figure and table
    ENSEMBLE = "ensemble"  # ``fid-bench ensemble``: finished runs combined; its model runs the members'
    IMPORTED = "imported"  # ``fid-bench import-predictions``: another tool's scores on our rows; no model

    def __str__(self) -> str:
        return self.value


#: kinds the leaderboard ranks and ``compare`` pairs: scored on test rows; untagged runs count as jobs
RANKED_KINDS = frozenset({RunKind.JOB, RunKind.ENSEMBLE, RunKind.IMPORTED})
#: kinds not ranked: summaries, trials (validation rows only), comparisons
UNRANKED_KINDS = frozenset(RunKind) - RANKED_KINDS
#: kinds that hold a model of their own: what ``predict`` and ``promote`` accept
MODEL_KINDS = frozenset({RunKind.JOB, RunKind.ENSEMBLE})
#: kinds without a model: never picked by ``predict`` or ``promote`` (imported runs are ranked all the same)
NO_MODEL_KINDS = frozenset(RunKind) - MODEL_KINDS
#: kinds that only summarise other runs: left out even when listing a parent run's children
SUMMARY_KINDS = frozenset({RunKind.PARENT, RunKind.COMPARISON})


def no_model_reason(run_id: str, kind: str) -> str:
    """Why run ``run_id`` of ``kind`` (one of ``NO_MODEL_KINDS``) cannot be loaded or promoted (one line)."""
    if kind == RunKind.IMPORTED:
        return (
            f"run {run_id} holds imported predictions (scores from another tool) and no model; it is "
            "ranked and compared, but predict, promote and ensemble members need a job or ensemble run"
        )
    return f"run {run_id} is a {kind} run and holds no model; give one of its job runs or --run best"

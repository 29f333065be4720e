"""What a run is: the ``fid_bench.kind`` tag every run fid_bench creates carries, and what follows from it.

One enum, and the sets derived from it once: which kinds hold a model of their own (what
``predict --run best`` and the leaderboard consider), and which kinds only summarise other runs
(never ranked, not even among the children of a parent run). A run without the tag (logged by
hand, or by an old version) counts as a job.

This module imports nothing: every layer may read it.
"""

from __future__ import annotations

from enum import Enum

#: the tag naming a run's kind
KIND_TAG = "fid_bench.kind"
#: the MLflow model a job run logs (``runs:/<run id>/model``)
MODEL_NAME = "model"


class RunKind(str, Enum):
    """The kinds of MLflow runs fid_bench writes (the value is the tag's text)."""

    JOB = "job"  # one detector fitted and evaluated; holds the model (a search's refit is a job too)
    PARENT = "parent"  # a Hydra multirun: summary of its child runs
    STUDY = "study"  # an Optuna study: the search's summary, parent of its trials
    TRIAL = "trial"  # one point of a search, evaluated on validation rows; no model kept
    COMPARISON = "comparison"  # ``fid-bench compare``'s figure and table

    def __str__(self) -> str:
        return self.value


#: kinds that hold a model of their own; untagged runs count as jobs
MODEL_KINDS = frozenset({RunKind.JOB})
#: kinds without a model: never ranked by the leaderboard, never picked by ``predict``
NO_MODEL_KINDS = frozenset(RunKind) - MODEL_KINDS
#: kinds that only summarise other runs: left out even when listing a parent run's children
SUMMARY_KINDS = frozenset({RunKind.PARENT, RunKind.COMPARISON})

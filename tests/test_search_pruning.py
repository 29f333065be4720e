"""Pruning plumbing: per-epoch metrics reach the trial, and TrialPruned gets out of Lightning's fit."""

from __future__ import annotations

from typing import Any

import pytest

from fid_bench.errors import FidBenchError
from fid_bench.jobs.search.trial_logger import TrialLogger, pruned_in_chain


class FakeClient:
    def __init__(self) -> None:
        self.terminated: list[tuple[str, str]] = []

    def set_terminated(self, run_id: str, status: str) -> None:
        self.terminated.append((run_id, status))


class FakeRun:
    """Records what a TrackedRun would have sent to MLflow."""

    def __init__(self) -> None:
        self.run_id = "run-1"
        self.client = FakeClient()
        self.metrics: list[tuple[dict[str, float], int | None]] = []
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.metrics.append((dict(metrics), step))

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update(tags)

    def log_text(self, text: str, artifact_file: str) -> str:
        return f"{artifact_file}:{len(text)}"


def _study(pruner):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction="maximize", pruner=pruner)


def test_reported_steps_and_prune_decision():
    import optuna

    # prune whenever the value is below 0.7, but never before step 2
    study = _study(optuna.pruners.ThresholdPruner(lower=0.7, n_warmup_steps=2))
    trial = study.ask()
    run = FakeRun()
    logger = TrialLogger(trial, "val_roc_auc", tags={"optuna_trial": "0"})
    assert logger.attach(run) is logger and run.tags == {"optuna_trial": "0"}

    logger.log_metrics({"val_roc_auc": 0.5, "train_loss": 1.0}, step=0)
    logger.log_metrics({"val_roc_auc": 0.6}, step=1)
    logger.log_metrics({"val_roc_auc": 0.1})  # no step: a final metric, not an intermediate value
    logger.log_metrics({"train_loss": 0.1}, step=2)  # no reported key
    with pytest.raises(optuna.TrialPruned, match="step 2 with val_roc_auc=0.6500"):
        logger.log_metrics({"val_roc_auc": 0.65}, step=2)
    # every call still reached the run, the pruned one included
    assert [step for _, step in run.metrics] == [0, 1, None, 2, 2]
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.intermediate_values == {0: 0.5, 1: 0.6, 2: 0.65}

    logger.mark_pruned()
    assert run.client.terminated == [("run-1", "KILLED")]
    assert run.tags["state"] == "PRUNED" and run.tags["pruned_at_step"] == "2"
    # other run methods pass straight through
    assert logger.log_text("abc", "x.txt") == "x.txt:3"


def test_pruned_is_found_behind_a_wrapping_error():
    import optuna

    try:
        try:
            raise optuna.TrialPruned("pruned at step 3")
        except optuna.TrialPruned as inner:
            raise FidBenchError("fold 0 failed") from inner
    except FidBenchError as outer:
        assert pruned_in_chain(outer)
    assert not pruned_in_chain(FidBenchError("plain"))
    assert not pruned_in_chain(None)


def test_trial_pruned_propagates_out_of_lightning_fit(tmp_path):
    """The real epoch callback of the fine-tuning track, a real Trainer, a pruner that fires at step 1."""
    import optuna
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader

    from fid_bench.finetune.callbacks import EpochMetrics

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)
            self.epochs_validated = 0

        def training_step(self, batch, batch_idx):
            logits = self.lin(batch["pixels"]).squeeze(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"])
            self.log("train_loss", loss, on_epoch=True, on_step=False)
            return loss

        def validation_step(self, batch, batch_idx):
            # a poor, falling score: 0.5, 0.4, 0.3, ...
            self.log("val_roc_auc", 0.5 - 0.1 * self.current_epoch, on_epoch=True, on_step=False)

        def on_validation_epoch_end(self) -> None:
            self.epochs_validated += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    # batches shaped like the fine-tuning data module's (EpochMetrics counts batch["label"])
    x, y = torch.randn(16, 4), (torch.rand(16) > 0.5).float()
    items = [{"pixels": x[i], "label": y[i]} for i in range(16)]
    loader = DataLoader(items, batch_size=8)

    def objective(trial):
        run = FakeRun()
        logger = TrialLogger(trial, "val_roc_auc", tags={}).attach(run)
        module = Tiny()
        trainer = pl.Trainer(
            max_epochs=6,
            callbacks=[EpochMetrics(logger)],
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(tmp_path),
        )
        try:
            trainer.fit(module, loader, loader)
        finally:
            objective.epochs = module.epochs_validated
        return 1.0

    study = _study(optuna.pruners.ThresholdPruner(lower=0.45, n_warmup_steps=0))
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.intermediate_values == pytest.approx({0: 0.5, 1: 0.4})
    assert objective.epochs == 2  # training stopped at the pruned epoch, not after all six

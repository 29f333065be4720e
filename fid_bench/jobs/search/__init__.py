"""Optuna hyperparameter search over the Hydra config (``python -m fid_bench hparams_search=NAME``).

Modules (optuna and mlflow are imported inside their functions):
    space         ``hparams_search.params`` -> validated parameters -> Optuna suggestions
    study         ``run_study(cfg)``: a resumable, shareable study; trials are validation-scored jobs
    storage       the Optuna RDB storage (SQLite file by default, any SQLAlchemy URL)
    trial_logger  per-epoch metrics -> trial reports -> pruning
    report        the study's parent MLflow run: progress, summary, plots

The objective's direction defaults to the metric's direction in ``evaluation.registry``.

May import: ``experiment``, ``tracking``, ``evaluation``, ``data``, ``detector`` and the foundations;
never ``commands``.
"""

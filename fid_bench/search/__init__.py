"""Optuna hyperparameter search over the Hydra config (``python -m fid_bench hparams_search=NAME``).

``space`` turns ``hparams_search.params`` into suggestions; ``study`` runs a resumable study whose
trials are ordinary jobs evaluated on validation rows, each a child MLflow run of the study's run.
"""

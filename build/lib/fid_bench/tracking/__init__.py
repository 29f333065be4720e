"""MLflow tracking: one run per job, a parent run per multirun, logged models and the leaderboard.

Modules (mlflow is imported only inside their functions, so importing this package is cheap):
    store        tracking URI resolution, race-safe store and experiment creation
    run          ``tracked_run(cfg)``: the run context every job goes through
    callbacks    ``ParentRunCallback``: the Hydra callback that owns a multirun's parent run
    pyfunc       the MLflow model wrapping a fitted ``Predictor``; ``load_predictor``
    leaderboard  ranking runs from the tracking store (``fid-bench leaderboard``)
"""

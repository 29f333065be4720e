"""MLflow tracking: one run per job, a parent run per multirun, logged models, and reading runs back.

Modules (mlflow is imported only inside their functions, except ``pyfunc``, so importing the package
is cheap):
    kinds           the run-kind enum (job, parent, study, trial, comparison, ensemble, imported), which
                    kinds are ranked and which hold a model, and the model's name
    store           tracking URI resolution, race-safe store and experiment creation, ``TrackingSettings``
    run_queries     run queries: which store, opening it, reading runs, resolving a run id or ``best``
    model_location  where a model may be loaded from (only inside the store that logged it)
    run_factory     ``start_run``: the one place a run of any kind is started
    logged_run      ``TrackedRun`` (what jobs and detectors log through), ``closing_run``, the DDP rank
    logged_values   a config as params; keys and values as MLflow stores them
    logged_scores   ``predictions.csv``, plots and held-out metrics of a scores frame, logged to a run
    run_tags        a run's identifying tags (group choices, track, git state), its name and description
    sweep_files     the files a multirun's jobs share: the parent run file, a failed job's file
    job_run         ``tracked_run(JobRunSpec)``: the run context every job goes through
    scored_run      a run made from a scores frame (ensembles, imported predictions), logged as a job's
    callbacks       ``ParentRunCallback``: the Hydra callback that owns a multirun's parent run
    pyfunc          the MLflow model wrapping a fitted ``Predictor``; ``load_predictor`` (imports mlflow)
    leaderboard     ranking runs (the library of ``fid-bench leaderboard``)
    compare         overlaid curves and a metric table of several runs (the library of ``fid-bench compare``)

May import: ``evaluation``, ``data``, ``detector`` and the foundations. Never imports ``predict``,
``experiment``, ``search`` or ``commands``; holds no argparse.
"""

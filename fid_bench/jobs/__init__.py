"""Jobs: what runs and logs one MLflow run of a kind.

``experiment`` (a benchmark job: samples -> folds -> detector -> scores -> metrics, from the ``JobSpec``
of ``job_spec``), ``shard_job`` (one shard of a split extraction), ``ensemble`` (finished runs combined), ``imported`` (another tool's scores),
``search`` (an Optuna study over jobs).
"""

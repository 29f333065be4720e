"""Evaluation shared by every track: scores in, metrics and plots out.

Owns: the metric registry (``registry``: every metric's source, direction, headline and table
membership), the metrics themselves (``metrics``), bootstrap intervals (``uncertainty``), extra data
sets, perturbations and groups (``generalisation``, ``perturb``) and the plots (``plots``).

May import: ``data``, ``detector`` (the ``Predictor`` contract), ``config`` and the foundations.
``registry`` itself imports nothing from fid_bench, so any layer may read it. Never imports tracking,
the tracks, jobs or commands.
"""

"""The tasks behind the entry points: ``train``, ``evaluate`` (eval.py), ``predict``, ``export``.

Each task takes the composed Hydra config and returns the run's summary; user errors are raised as
:class:`lanmsff.errors.UserError` and turned into exit status 2 by :func:`lanmsff.entrypoints.run_cli`.
"""

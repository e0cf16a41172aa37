"""Analysis of finished runs: the comparison report (:mod:`~lanmsff.analysis.report`), its statistics
(:mod:`~lanmsff.analysis.stats`) and its command line (:mod:`~lanmsff.analysis.cli`, ``python -m lanmsff.analysis``)."""

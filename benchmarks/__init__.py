"""The benchmark suite, beside the package (``make bench``; ``python -m benchmarks`` from the repository root).

Speed is measured here, as ratios within one run, and never asserted in tests. It uses only the public
API of ``lanmsff``. Each run is added to ``benchmarks/results/<cpu-kind>-<YYYY-MM-DD>.json``
(:mod:`benchmarks.result_files`), and ``make speed-tables`` (:mod:`benchmarks.tables`) writes the docs'
speed results page from those files.
"""

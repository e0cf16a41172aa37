"""``python -m benchmarks``: the benchmark suite (:mod:`benchmarks.suite`), after the process set-up it needs."""

from benchmarks.process import short_spin_count

short_spin_count()  # before torch is imported

from benchmarks.suite import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

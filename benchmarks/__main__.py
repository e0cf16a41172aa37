"""``python -m benchmarks``: the benchmark suite (:mod:`benchmarks.suite`), after the process set-up it needs."""

from lanmsff.runtime.process import prepare_process

prepare_process(tune_allocator=False)  # before torch is imported; the bench tunes the allocator itself

from benchmarks.suite import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())

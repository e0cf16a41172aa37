"""The process set-up a benchmark needs before torch is imported."""

from __future__ import annotations

import os
import sys

from lanmsff.runtime.process import SHORT_SPINCOUNT, SPINCOUNT_ENV, SWITCH_ENV


def short_spin_count() -> bool:
    """The short OpenMP spin count of :func:`lanmsff.runtime.process.prepare_process`, without its allocator tuning.

    The entry points set ``GOMP_SPINCOUNT`` before torch loads (libgomp reads it once); without it torch's
    threads collapse whenever another process takes a core of a small machine, and a benchmark on a shared
    machine would measure that. The allocator is left alone: the benchmark times the default allocator first
    and tunes it itself later (:func:`lanmsff.runtime.process.tune_glibc_malloc`). A value already set is kept,
    and ``LANMSFF_PROCESS_SETUP=0`` turns this off too. Returns whether it was in time (torch not yet imported).
    """
    if os.environ.get(SWITCH_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    os.environ.setdefault(SPINCOUNT_ENV, SHORT_SPINCOUNT)
    return "torch" not in sys.modules

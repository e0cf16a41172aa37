"""The process set-up the entry points make before torch is imported: a short OpenMP spin and glibc's allocator.

Importing :mod:`lanmsff` changes nothing in the process. ``train.py``, ``eval.py``, ``predict.py`` and
``export.py`` call :func:`prepare_process` first thing, before torch is imported; a library user who wants
the same set-up does the same::

    from lanmsff.runtime.process import prepare_process
    prepare_process()  # before `import torch`
    import torch

This module imports nothing that imports torch. ``LANMSFF_PROCESS_SETUP=0`` in the environment turns the
set-up off; what was applied is recorded in each run's provenance.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import MutableMapping

SWITCH_ENV = "LANMSFF_PROCESS_SETUP"
SPINCOUNT_ENV = "GOMP_SPINCOUNT"
SHORT_SPINCOUNT = "10000"

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
_allocator_tuned = False


def enabled(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether the process set-up is on (``LANMSFF_PROCESS_SETUP`` is not ``0``, ``false``, ``no`` or ``off``)."""
    environ = os.environ if environ is None else environ
    return environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def prepare_process(
    environ: MutableMapping[str, str] | None = None, *, tune_allocator: bool = True
) -> dict[str, object]:
    """Set a short OpenMP spin count and tune glibc's allocator, unless ``LANMSFF_PROCESS_SETUP=0``.

    * ``GOMP_SPINCOUNT=10000`` (a value already set is kept): libgomp, torch's OpenMP runtime, reads it
      once, when torch is first imported, so this must run before. Its default (300,000 spins at every
      barrier) makes torch's threads collapse whenever another process takes a core of a small machine; a
      short spin keeps the idle speed and changes no number.
    * :func:`tune_glibc_malloc`, unless ``tune_allocator`` is False (the benchmark times the default
      allocator first and tunes it itself later).

    Returns what was done, as provenance records it. Calling it after torch was imported still tunes the
    allocator, but the spin count then no longer takes effect (``spincount_in_time`` is False).
    """
    environ = os.environ if environ is None else environ
    if not enabled(environ):
        return process_setup(environ)
    in_time = "torch" not in sys.modules
    environ.setdefault(SPINCOUNT_ENV, SHORT_SPINCOUNT)
    if tune_allocator:
        tune_glibc_malloc()
    return {**process_setup(environ), "spincount_in_time": in_time}


def process_setup(environ: MutableMapping[str, str] | None = None) -> dict[str, object]:
    """What provenance records of the process set-up: the switch, the spin count and the allocator."""
    environ = os.environ if environ is None else environ
    return {
        "enabled": enabled(environ),
        "gomp_spincount": environ.get(SPINCOUNT_ENV),
        "allocator_tuned": _allocator_tuned,
    }


def tune_glibc_malloc() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them (process-wide); True if applied.

    glibc serves allocations above its mmap threshold (at most 32 MiB) with ``mmap`` and unmaps
    them on ``free``, so a network whose activations exceed 32 MiB (LANMSFF at batch 64: 69 MB per
    block-1 tensor in fp32) maps fresh zero-filled pages on every forward and backward pass, which
    costs a large share of the CPU time on a small machine. ``M_MMAP_MAX=0`` serves them from the
    heap and a high ``M_TRIM_THRESHOLD`` keeps the heap from shrinking, so the memory is reused (and
    not returned to the OS before exit). The setting is global and permanent for the process.
    """
    global _allocator_tuned
    try:
        libc = ctypes.CDLL("libc.so.6")
        applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False
    _allocator_tuned = _allocator_tuned or applied
    return applied


def allocator_tuned() -> bool:
    """Whether :func:`tune_glibc_malloc` has been applied in this process."""
    return _allocator_tuned

"""The machine: CPU features (native bf16 or emulated) and a description for provenance and benchmarks."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any

import torch

NATIVE_BF16_ENV = "LANMSFF_NATIVE_BF16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
KEY_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")
ISA_LIMIT_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")  # cap torch's and oneDNN's instruction sets


CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpuinfo() -> str:
    """The text of :data:`CPUINFO` (empty where there is no such file, e.g. off Linux)."""
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpuinfo_field(text: str, *names: str) -> str | None:
    """The value of the first ``name : value`` line of ``/proc/cpuinfo``-style ``text`` named one of ``names``."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in names:
            return value.strip()
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """Feature flags of the first CPU in ``/proc/cpuinfo`` (``flags`` on x86, ``Features`` on ARM; empty if none)."""
    return frozenset((cpuinfo_field(cpuinfo(), "flags", "Features") or "").split())


def cpu_has_native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (AVX-512 BF16 or AMX), not by emulation.

    Reads the ``avx512_bf16`` / ``amx_bf16`` flags of ``/proc/cpuinfo`` and, where /proc is not
    available, asks torch's own probes. ``torch.backends.cpu.get_cpu_capability()`` alone is not
    enough: it says ``AVX512`` both for CPUs with and without the BF16 extension.

    The environment variable ``LANMSFF_NATIVE_BF16=0`` (or ``1``) overrides the answer: ``0`` makes
    a bf16-capable machine take the path of a CPU without bf16 (``precision=auto`` gives fp32, the
    benchmark skips bf16), e.g. to try what another CPU kind does.
    """
    override = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if cpu_flags():
        return bool(cpu_flags() & set(BF16_FLAGS))
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


@functools.cache
def cpu_runs_avx512() -> bool:
    """Whether torch's CPU kernels run at AVX-512 width in this process.

    ``torch.backends.cpu.get_cpu_capability()`` says ``AVX512`` on CPUs with AVX-512 (with or without
    its BF16 extension) and ``AVX2`` on AVX2-only CPUs. The environment
    variable ``ATEN_CPU_CAPABILITY=avx2`` lowers it for a process; together with
    ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN's kernels) and ``LANMSFF_NATIVE_BF16=0`` it makes an AVX-512
    machine take the code paths of an AVX2-only CPU (a stand-in for trying them, not a measurement of
    that CPU's speed).
    """
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def isa_limits() -> dict[str, str]:
    """The variables of :data:`ISA_LIMIT_ENV` set in this process (empty when the kernels use the whole CPU)."""
    return {name: os.environ[name] for name in ISA_LIMIT_ENV if os.environ.get(name)}


INDUCTOR_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


def use_inductor_cache_of_isa_limits() -> str | None:
    """Point ``torch.compile``'s on-disk cache at a folder of its own while :func:`isa_limits` are set.

    torch 2.14.1's inductor cache does not tell kernels compiled under ``ATEN_CPU_CAPABILITY=avx2``
    from those compiled for the whole CPU: a later process without the limit loaded them and crashed
    (SIGABRT or SIGSEGV in ``torch.compile``). With a limit set and no folder of the
    user's own in ``TORCHINDUCTOR_CACHE_DIR``, this sets it to inductor's default folder followed by the
    limits (e.g. ``/tmp/torchinductor_root-avx2-avx2``). Call it before compiling; returns the folder it
    set, or ``None`` when it changed nothing.
    """
    limits = isa_limits()
    if not limits:
        return None
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    default = os.path.abspath(default_cache_dir())
    given = os.environ.get(INDUCTOR_CACHE_ENV)
    if given and os.path.abspath(given) != default:
        return None
    folder = "-".join([default, *(value.lower() for value in limits.values())])
    os.environ[INDUCTOR_CACHE_ENV] = folder
    return folder


def compile_module(module: torch.nn.Module, **options: Any) -> Any:
    """``torch.compile(module, **options)`` with its cache kept apart under kernel limits
    (:func:`use_inductor_cache_of_isa_limits`): the one way this package compiles."""
    use_inductor_cache_of_isa_limits()
    return torch.compile(module, **options)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``unknown`` where it cannot be read)."""
    return cpuinfo_field(cpuinfo(), "model name") or "unknown"


def cpu_id() -> str:
    """Vendor, family and model number from ``/proc/cpuinfo`` (``unknown`` where they cannot be read).

    Tells apart CPUs that share a model name: virtual machines may show the same ``AMD EPYC`` for an
    AVX2-only CPU family 25 and an AVX-512 BF16 CPU family 26.
    """
    text = cpuinfo()
    vendor, family, model = (cpuinfo_field(text, name) for name in ("vendor_id", "cpu family", "model"))
    if vendor is None or family is None:
        return "unknown"
    return f"{vendor} family {family} model {model}"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask), at least 1."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_description() -> dict[str, Any]:
    """The CPU as benchmarks and run records report it: model, cores, capability, the flags that matter, bf16."""
    return {
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cores": usable_cores(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags": sorted(cpu_flags() & set(KEY_FLAGS)),
        "native_bf16": cpu_has_native_bf16(),
        "bf16_flags": sorted(cpu_flags() & set(BF16_FLAGS)),
        "native_bf16_override": os.environ.get(NATIVE_BF16_ENV) or None,
        "isa_limits": isa_limits(),
    }


class EmulatedBF16Warning(RuntimeWarning):
    """bf16 was asked for on a CPU that only emulates it (slower than fp32, rounded differently)."""


def warn_if_bf16_emulated(what: str) -> bool:
    """Warn that ``what`` runs emulated bf16 on this CPU; True if it does."""
    if cpu_has_native_bf16():
        return False
    warnings.warn(
        f"{what}: this CPU has no native bf16 (no AVX-512 BF16 or AMX), so bf16 is emulated: slower than "
        "fp32 and rounded differently; use 'auto' (fp32 here) or fp32",
        EmulatedBF16Warning,
        stacklevel=3,
    )
    return True

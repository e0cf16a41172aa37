"""Running the benchmark suite (``python -m benchmarks``, in ``benchmarks/`` beside the package) from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def bench_env(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark subprocess: ``benchmarks`` importable, generated data under ``cwd``."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "LANMSFF_ROOT": str(cwd), **(env or {})}


def run_bench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` in ``cwd``; its results file goes to ``cwd/results`` unless ARGS say where
    (never to the checkout's ``benchmarks/results/``)."""
    if "--results-dir" not in args and "--no-record" not in args:
        args = (*args, "--results-dir", str(Path(cwd) / "results"))
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=cwd,
        env=bench_env(cwd, env),
        capture_output=True,
        text=True,
        timeout=900,
    )

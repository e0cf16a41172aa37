"""Time the KDEF preprocessing of a KDEF-sized tree (4,900 images of 562x762).

    python -m benchmarks.preprocess [--out benchmarks/out/preprocess.json] [--tree data/kdef_synthetic_full]
                                       [--variants detect_cnn,detect_haar,box]

Generates the synthetic tree with 70 people once (it is reused afterwards), then preprocesses it
without cache in each variant (``face_crop=detect`` with the CNN and with the Haar cascades, and
``box``) with all cores, and once more from the cache. Besides the wall time it records the CPU time
of the run and its workers, and the load average before and after: on a shared machine the wall time
moves with the load, the CPU time much less. The budget for a cold ``detect`` is 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lanmsff.data.cache import preprocess_records
from lanmsff.data.kdef import index_kdef
from lanmsff.data.synthetic import generate
from lanmsff.errors import check_choice
from lanmsff.runtime.hardware import cpu_model
from lanmsff.utils.io import atomic_write_json

BUDGET_S = 60.0  # a cold face_crop=detect of a KDEF-sized tree on 2 cores (issue 14)
VARIANTS: dict[str, dict[str, Any]] = {
    "detect_cnn": {"mode": "detect", "detector": "cnn"},
    "detect_haar": {"mode": "detect", "detector": "haar"},
    "box": {"mode": "box"},
}


def _cpu_seconds() -> float:
    """User + system time of this process and its finished children (the preprocessing workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_variant(tree_root: Path, records: list, settings: dict[str, Any], workers: int) -> dict[str, Any]:
    """Cold and cached preprocessing of ``records`` with one variant's settings."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as cache:
        cpu, start = _cpu_seconds(), time.perf_counter()
        faces = preprocess_records(tree_root, records, cache_dir=cache, workers=workers, **settings)
        cold, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        start = time.perf_counter()
        preprocess_records(tree_root, records, cache_dir=cache, workers=workers, **settings)
        warm = time.perf_counter() - start
    result = {
        "seconds": round(cold, 2),
        "images_per_s": round(len(records) / cold, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_ms_per_image": round(cpu / len(records) * 1000, 2),
        "cached_seconds": round(warm, 3),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "crops": faces.crop_counts(),
    }
    if settings["mode"] == "detect":
        result["within_budget"] = cold <= BUDGET_S
    return result


def run(tree: Path, variants: tuple[str, ...] = tuple(VARIANTS)) -> dict:
    for name in variants:
        check_choice("--variants", name, list(VARIANTS))
    generate(tree, identities=70)
    index = index_kdef(tree)
    workers = len(os.sched_getaffinity(0))
    results = {
        "images": len(index),
        "workers": workers,
        "machine": cpu_model() or platform.processor() or platform.machine(),
        "budget_s": BUDGET_S,
        "modes": {},
    }
    for name in variants:
        results["modes"][name] = time_variant(index.root, index.records, VARIANTS[name], workers)
    return results


def results_table(results: dict) -> Table:
    """The timings of :func:`run` as a table."""
    table = Table(title=f"Preprocessing {results['images']} KDEF-sized images, {results['workers']} workers")
    columns = ("variant", "seconds", "images/s", "CPU ms/image", "load avg", "from cache (s)", "crops")
    for column in columns:
        table.add_column(column)
    for mode, r in results["modes"].items():
        over = " (over budget)" if r.get("within_budget") is False else ""
        table.add_row(
            mode,
            f"{r['seconds']:.1f}{over}",
            f"{r['images_per_s']:.0f}",
            f"{r.get('cpu_ms_per_image', float('nan')):.1f}",
            "-".join(f"{v:.1f}" for v in r.get("load_average", ())),
            f"{r['cached_seconds']:.2f}",
            str(r["crops"]),
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.preprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default="data/kdef_synthetic_full", type=Path)
    parser.add_argument("--out", default="benchmarks/out/preprocess.json", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: %(default)s")
    args = parser.parse_args(argv)
    results = run(args.tree, tuple(v.strip() for v in args.variants.split(",") if v.strip()))
    Console().print(results_table(results))
    atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

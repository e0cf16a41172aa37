"""Time the KDEF preprocessing of a KDEF-sized tree (4,900 images of 562x762).

    python -m lanmsff.bench.preprocess [--out bench/preprocess.json] [--tree data/kdef_synthetic_full]

Generates the synthetic tree with 70 people once (it is reused afterwards), then preprocesses it
without cache in each crop mode with all cores, and once more from the cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lanmsff.data.cache import preprocess_records
from lanmsff.data.kdef import index_kdef
from lanmsff.data.synthetic import generate
from lanmsff.utils.io import atomic_write_json


def run(tree: Path, modes: tuple[str, ...] = ("detect", "box")) -> dict:
    generate(tree, identities=70)
    index = index_kdef(tree)
    workers = len(os.sched_getaffinity(0))
    results = {
        "images": len(index),
        "workers": workers,
        "machine": platform.processor() or platform.machine(),
        "modes": {},
    }
    for mode in modes:
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            faces = preprocess_records(index.root, index.records, mode=mode, cache_dir=cache, workers=workers)
            cold = time.perf_counter() - start
            start = time.perf_counter()
            preprocess_records(index.root, index.records, mode=mode, cache_dir=cache, workers=workers)
            warm = time.perf_counter() - start
        results["modes"][mode] = {
            "seconds": round(cold, 2),
            "images_per_s": round(len(index) / cold, 1),
            "cached_seconds": round(warm, 3),
            "crops": faces.crop_counts(),
        }
    return results


def results_table(results: dict) -> Table:
    """The timings of :func:`run` as a table."""
    table = Table(title=f"Preprocessing {results['images']} KDEF-sized images, {results['workers']} workers")
    for column in ("crop mode", "seconds", "images/s", "from cache (s)", "crops"):
        table.add_column(column)
    for mode, r in results["modes"].items():
        table.add_row(
            mode, f"{r['seconds']:.1f}", f"{r['images_per_s']:.0f}", f"{r['cached_seconds']:.2f}", str(r["crops"])
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lanmsff.bench.preprocess", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default="data/kdef_synthetic_full", type=Path)
    parser.add_argument("--out", default="bench/preprocess.json", type=Path)
    args = parser.parse_args(argv)
    results = run(args.tree)
    Console().print(results_table(results))
    atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

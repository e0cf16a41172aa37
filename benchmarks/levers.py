"""Levers on our training step, each in a fresh process, interleaved (``python -m benchmarks.levers``).

    python -m benchmarks.levers [--levers default,threads=1,...] [--batch 32] [--seconds 8] [--rounds 3]

A lever is a change of how the same training step runs: process environment (read when the
libraries load, hence a fresh process each), thread count, memory format per block, ``torch.compile``.
Every process builds the same LANMSFF, applies the allocator tuning ``train.py`` applies, and times
the default training step (channels-last, ``precision=auto``, on CPUs the CPU kernels of
``model.cpu_kernels=auto``) with
:func:`benchmarks.peer.time_calls`; ``torch.compile`` levers also report their compile time (the
first call). The rounds run every lever once in turn, so the machine's load drifts over all of them
alike; the result gives each lever's rate, its ratio to ``default`` (from pooled times) and the
spread between rounds. Nothing here changes training: a lever that helps becomes a recommendation,
with an equivalence test in ``tests/test_cpu_kernels.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peer import CHECKOUT, spread, upper_median
from lanmsff.runtime.process import prepare_process
from lanmsff.utils.io import atomic_write_json

LEVERS: dict[str, dict[str, Any]] = {
    "default": {},
    "threads=1": {"threads": 1},
    "OMP_WAIT_POLICY=PASSIVE": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    # libgomp (torch's OpenMP) spins 300,000 times before sleeping at each barrier by default
    "GOMP_SPINCOUNT=10000": {"env": {"GOMP_SPINCOUNT": "10000"}},
    "GOMP_SPINCOUNT=1000": {"env": {"GOMP_SPINCOUNT": "1000"}},
    "block1 NCHW + rest channels-last": {"nchw_blocks": (0,)},
    "blocks1-2 NCHW + 3-4 channels-last": {"nchw_blocks": (0, 1)},
    "fp32 (precision auto off)": {"fp32": True},
    "torch.compile(model)": {"compile": True},
    "no allocator tuning": {"no_malloc_tuning": True},
    # the demo's Lightning loop (batch 32, benchmarks.lightning_loop) with and without its progress bar
    "Lightning demo loop": {"lightning": True},
    "Lightning demo loop (no progress bar)": {"lightning": True, "progress_bar": False},
    "Lightning demo loop (OMP_WAIT_POLICY=PASSIVE)": {"lightning": True, "env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    # the demo augments in the main process (data.num_workers=0): per image with albumentations between steps,
    # or per batch with torch ops (data.augment_on_device), or in one loader process beside the training threads
    "Lightning demo loop (augment_on_device)": {"lightning": True, "overrides": ("data.augment_on_device=true",)},
    "Lightning demo loop (1 loader worker)": {"lightning": True, "overrides": ("data.num_workers=1",)},
}
DEFAULT_LEVERS = tuple(k for k in LEVERS if k != "torch.compile(model)" and not LEVERS[k].get("lightning"))
LIGHTNING_LEVERS = tuple(k for k in LEVERS if LEVERS[k].get("lightning"))
LIGHTNING_DATA = Path(os.environ.get("LANMSFF_ROOT", ".")) / "data" / "bench_faces"
LIGHTNING_IDENTITIES = 4


# ----------------------------------------------------------------------------- the worker (one lever)
def _to_layout(memory_format: Any) -> Callable:
    def hook(_module: Any, args: tuple) -> tuple:
        return (args[0].contiguous(memory_format=memory_format), *args[1:])

    return hook


def apply_block_layout(model: Any, nchw_blocks: tuple[int, ...]) -> None:
    """Blocks in ``nchw_blocks`` run in NCHW, the others channels-last (inputs converted at each block)."""
    import torch

    for index, block in enumerate(model.blocks):
        fmt = torch.contiguous_format if index in nchw_blocks else torch.channels_last
        block.to(memory_format=fmt)
        block.register_forward_pre_hook(_to_layout(fmt))


def worker(name: str, batch: int, seconds: float, threads: int) -> dict[str, Any]:
    """Time the default training step with lever ``name`` in this process (torch not imported yet)."""
    prepare_process(tune_allocator=False)  # train.py's spin count; a lever's own GOMP_SPINCOUNT is kept
    import torch

    from benchmarks import models as bm
    from benchmarks.peer import time_calls
    from benchmarks.versus import default_train_variant
    from lanmsff.runtime.hardware import compile_module
    from lanmsff.runtime.process import tune_glibc_malloc

    lever = LEVERS[name]
    torch.set_num_threads(lever.get("threads", threads))
    tuned = False if lever.get("no_malloc_tuning") else tune_glibc_malloc()
    if lever.get("lightning"):
        return lightning_worker(lever, seconds, tuned)
    s = bm.Settings(batch=batch, threads=threads)
    torch.manual_seed(0)
    model = bm.build_model("lanmsff", s)
    variant = default_train_variant(model, torch.device("cpu"))
    if lever.get("fp32"):
        variant = bm.TrainVariant(True, False)
    net, optimizer = bm.prepare_training(model, variant)
    if "nchw_blocks" in lever:
        apply_block_layout(net, lever["nchw_blocks"])
    run_net = compile_module(net) if lever.get("compile") else net
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, 64, 64, generator=generator)
    y = torch.randint(0, 7, (batch,), generator=generator)

    def step() -> None:
        bm.train_step(run_net, optimizer, variant, x, y)

    timing = time_calls(step, seconds, warmup=3 if lever.get("compile") else 2)
    return {
        **timing,
        "images_per_s": round(batch / timing["median_s"], 2),
        "threads": torch.get_num_threads(),
        "variant": variant.__dict__,
        "allocator_tuned": tuned,
        "load_1min": round(os.getloadavg()[0], 2),
    }


def lightning_worker(lever: dict[str, Any], seconds: float, tuned: bool) -> dict[str, Any]:
    """The demo's Lightning loop for about ``seconds`` of steps (batch 32), in :func:`worker`'s result format."""
    import torch

    from benchmarks.lightning_loop import lightning_steps
    from lanmsff.data.datamodule import SyntheticKDEFDataModule

    SyntheticKDEFDataModule(LIGHTNING_DATA, identities=LIGHTNING_IDENTITIES, face_crop="box").prepare_data()
    steps = max(4, int(seconds / 0.6))  # about 0.6 s per step on 2 idle cores
    bar = lever.get("progress_bar", True)
    overrides = tuple(lever.get("overrides", ()))
    run = lightning_steps(LIGHTNING_DATA, LIGHTNING_IDENTITIES, steps=steps, progress_bar=bar, overrides=overrides)
    periods = run["periods_s"]
    return {
        "times_s": periods,
        "median_s": upper_median(periods),
        "first_call_s": None,
        "cpu_per_wall": None,
        "images_per_s": run["images_per_s"],
        "threads": torch.get_num_threads(),
        "variant": {"precision": run["precision"], "progress_bar": run["progress_bar"], "overrides": list(overrides)},
        "allocator_tuned": tuned,
        "load_1min": round(os.getloadavg()[0], 2),
        "inside_step_fraction": run["inside_step_fraction"],
        "between_steps_ms_per_step": run["between_steps_ms_per_step"],
    }


# ----------------------------------------------------------------------------- the driver
def run_lever(name: str, batch: int, seconds: float, threads: int) -> dict[str, Any]:
    """:func:`worker` in a fresh process with the lever's environment."""
    path = os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **LEVERS[name].get("env", {}), "PYTHONPATH": path}  # benchmarks/ importable from anywhere
    command = [sys.executable, "-m", "benchmarks.levers", "--worker", name]
    command += ["--batch", str(batch), "--seconds", str(seconds), "--threads", str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(names: list[str], batch: int, seconds: float, threads: int, rounds: int) -> dict[str, Any]:
    """Every lever once per round, in turn; pooled rates, ratios to ``default`` and round spreads."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            runs[name].append(run_lever(name, batch, seconds, threads))
    rows = {name: _pool(batch, results) for name, results in runs.items()}
    base = rows.get("default", {}).get("images_per_s")
    for row in rows.values():
        if base and row.get("images_per_s"):
            row["ratio_vs_default"] = round(row["images_per_s"] / base, 3)
    return {"batch": batch, "threads": threads, "rounds": rounds, "seconds": seconds, "levers": rows}


def _pool(batch: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if "error" not in r]
    if not good:
        return {"error": results[0]["error"]}
    medians = [r["median_s"] for r in good]
    return {
        "images_per_s": round(batch / upper_median([t for r in good for t in r["times_s"]]), 2),
        "round_images_per_s": [round(batch / m, 2) for m in medians],
        "round_spread": spread(medians),
        "first_call_s": [r["first_call_s"] for r in good],
        "cpu_per_wall": [r["cpu_per_wall"] for r in good],
        "load_1min": [r["load_1min"] for r in good],
        "between_steps_ms_per_step": [r.get("between_steps_ms_per_step") for r in good],  # Lightning levers
        "threads": good[0]["threads"],
        "variant": good[0]["variant"],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--levers", default=",".join(DEFAULT_LEVERS), help=f"comma-separated, from: {', '.join(LEVERS)}"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per lever and round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/levers.json"), help="(default: %(default)s)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.seconds, args.threads)))
        return 0
    names = [n.strip() for n in args.levers.split(",") if n.strip()]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        print(f"error: --levers: unknown {', '.join(unknown)}; choices: {', '.join(LEVERS)}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    result = compare(
        ["default", *[n for n in names if n != "default"]], args.batch, args.seconds, args.threads, args.rounds
    )
    result.update(seconds_total=round(time.perf_counter() - start, 1), load_end=round(os.getloadavg()[0], 2))
    atomic_write_json(args.out, result)
    for name, row in result["levers"].items():
        rate = row.get("images_per_s", row.get("error"))
        print(f"{name:40s} {rate!s:>10} img/s  x{row.get('ratio_vs_default', '-')}  spread {row.get('round_spread')}")
    print(f"Results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ours against the authors' TensorFlow in the same run, interleaved (the ``versus_tf`` part of the bench).

Pairs (ours / TF, same batch, same thread count on both sides):

* inference at ``--batch``: ``optimize(precision="auto")`` and ``optimize(precision="fp32")`` against
  TF's ``tf.function`` inference;
* training at ``--batch`` and at 32 (the authors' batch size): our default training step
  (channels-last, ``precision=auto`` as :func:`lanmsff.runtime.precision.trainer_precision` resolves it,
  with the CPU kernels of ``model.cpu_kernels=auto`` on CPUs, after the allocator
  tuning ``train.py`` applies) against
  TF's ``GradientTape`` step; at 32 also our step through the demo's Lightning loop
  (:mod:`benchmarks.lightning_loop`), so Lightning's overhead shows next to the raw step.

Every path is measured ``rounds`` times, one round after the other with the paths in a fixed order
(TF, then ours, in each group), so a change of the machine's load during the run hits both sides;
rates come from the pooled per-call times, and each path's spread between rounds is reported
(``round_spread``: max / min of the round medians - 1) as the noise of the comparison. Both sides are
timed by the same function, :func:`benchmarks.peer.time_calls`, which also records each path's
CPU seconds per wall second (how many cores it kept busy).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks import models as bm
from benchmarks.models import Settings, TrainVariant
from benchmarks.peer import PeerError, PeerProcess, spread, time_calls, upper_median
from lanmsff.inference import optimize
from lanmsff.runtime.precision import trainer_precision

DEMO_BATCH = 32  # the authors' batch size, the demo's
TF_INFERENCE = "TF tf.function"
TF_TRAINING = "TF GradientTape step"


# ----------------------------------------------------------------------------- our paths
def default_train_variant(model: nn.Module, device: torch.device) -> TrainVariant:
    """Our training default on ``device``: channels-last, ``precision=auto``, and on a CPU the CPU kernels of
    ``model.cpu_kernels=auto`` (what ``FERModule`` applies when a fit starts)."""
    bf16 = str(trainer_precision("auto", "gpu" if device.type == "cuda" else "cpu")).startswith("bf16")
    return TrainVariant(True, bf16, cpu_kernels=device.type == "cpu")


def default_train_label(variant: TrainVariant) -> str:
    precision = "bf16" if variant.bf16 else "fp32"
    kernels = ", CPU kernels" if variant.cpu_kernels else ""
    return f"ours: training default (channels-last, auto={precision}{kernels})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_fn(model: nn.Module, precision: str, x: torch.Tensor) -> Callable[[], Any]:
    """``optimize(model, precision)`` classifying ``x`` (synchronised on CUDA)."""
    net = optimize(model, precision=precision)

    def run() -> None:
        with torch.no_grad():
            net(x)
        _sync(x.device)

    return run


def training_fn(model: nn.Module, variant: TrainVariant, batch: int, s: Settings, device: torch.device) -> Callable:
    """One training step (:func:`benchmarks.models.train_step`) of ``variant`` at ``batch`` on random
    images on ``device`` (synchronised on CUDA)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch, s.in_channels, s.image_size, s.image_size, generator=generator).to(device)
    y = torch.randint(0, s.num_classes, (batch,), generator=generator).to(device)
    net, optimizer = bm.prepare_training(model, variant, device)

    def step() -> None:
        bm.train_step(net, optimizer, variant, x, y)
        _sync(device)

    return step


# ----------------------------------------------------------------------------- the comparison
class Recorder:
    """Pooled per-call times and per-round medians of every path."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, label: str, batch: int, timing: dict[str, Any], side: str) -> None:
        row = self.rows.setdefault(label, {"side": side, "batch": batch, "times_s": [], "round_medians_s": []})
        row["times_s"] += timing["times_s"]
        row["round_medians_s"].append(timing["median_s"])
        row.setdefault("cpu_per_wall", []).append(timing.get("cpu_per_wall"))

    def finish(self) -> dict[str, dict[str, Any]]:
        out = {}
        for label, row in self.rows.items():
            median = upper_median(row["times_s"])
            out[label] = {
                **row,
                "images_per_s": round(row["batch"] / median, 2),
                "median_ms": round(1e3 * median, 2),
                "round_spread": spread(row["round_medians_s"]),
            }
        return out


def versus_tf(
    peer: PeerProcess | None,
    s: Settings,
    *,
    device: torch.device,
    rounds: int,
    lightning: Callable[[], dict[str, Any]] | None,
    train_batches: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Our paths and (with ``peer``) TF's, interleaved over ``rounds``; rates, ratios, threads and noise.

    Training is compared at ``train_batches`` (default: ``s.batch`` and 32).
    """
    torch.manual_seed(0)
    model = bm.build_model("lanmsff", s)
    variant = default_train_variant(model, device)
    train_label = default_train_label(variant)
    x = torch.rand(s.batch, s.in_channels, s.image_size, s.image_size).to(device)
    ours_inference = {
        "ours: optimize(precision='auto')": inference_fn(model, "auto", x),
        "ours: optimize(precision='fp32')": inference_fn(model, "fp32", x),
    }
    batches = sorted(set(train_batches or (s.batch, DEMO_BATCH)), reverse=True)
    ours_training = {b: training_fn(model, variant, b, s, device) for b in batches}
    recorder, lightning_rounds, loads = Recorder(), [], []
    for _ in range(rounds):
        loads.append(round(os.getloadavg()[0], 2))
        if peer is not None:
            recorder.add(TF_INFERENCE, s.batch, peer.measure("inference", s.batch, s.min_run_time), "tf")
        for label, fn in ours_inference.items():
            recorder.add(label, s.batch, time_calls(fn, s.min_run_time, warmup=3), "ours")
        for batch in batches:
            if peer is not None:
                recorder.add(f"{TF_TRAINING}, batch {batch}", batch, _tf_train(peer, batch, s), "tf")
            timing = time_calls(ours_training[batch], s.train_run_time, warmup=1 if s.quick else 2)
            recorder.add(f"{train_label}, batch {batch}", batch, timing, "ours")
        if lightning is not None:
            lightning_rounds.append(lightning())
    rows = recorder.finish()
    result: dict[str, Any] = {
        "rows": rows,
        "rounds": rounds,
        "device": str(device),
        "training_variant": variant.__dict__,
        "load_1min_per_round": loads,
        "threads": {"torch_intra_op": torch.get_num_threads(), "torch_inter_op": torch.get_num_interop_threads()},
    }
    if lightning_rounds:
        result["lightning"] = _pool_lightning(lightning_rounds)
        rows[f"ours: demo's Lightning loop, batch {DEMO_BATCH}"] = _lightning_row(result["lightning"])
    if peer is not None:
        result["peer"] = peer.info
        result["threads"].update(tf_intra_op=peer.info["intra_op_threads"], tf_inter_op=peer.info["inter_op_threads"])
        result["pairs"] = pairs(rows, batches, train_label)
        result["ratios"] = ratios(rows, batches, train_label)
    return result


def _tf_train(peer: PeerProcess, batch: int, s: Settings) -> dict[str, Any]:
    return peer.measure("training", batch, s.train_run_time)


def _pool_lightning(runs: list[dict[str, Any]]) -> dict[str, Any]:
    periods = [p for run in runs for p in run["periods_s"]]
    seconds = [sum(run["periods_s"]) for run in runs]
    images = sum(run["images_per_s"] * t for run, t in zip(runs, seconds))
    inside = sum(run["inside_step_fraction"] * t for run, t in zip(runs, seconds))
    return {
        **{k: v for k, v in runs[0].items() if k not in ("periods_s", "images_per_s", "steps")},
        "steps": len(periods),
        "images_per_s": round(images / sum(periods), 2),
        "round_images_per_s": [run["images_per_s"] for run in runs],
        "inside_step_fraction": round(inside / sum(periods), 4),
        "between_steps_ms_per_step": [run["between_steps_ms_per_step"] for run in runs],
    }


def _lightning_row(pooled: dict[str, Any]) -> dict[str, Any]:
    rounds = pooled["round_images_per_s"]
    return {
        "side": "ours",
        "batch": pooled["batch"],
        "images_per_s": pooled["images_per_s"],
        "round_images_per_s": rounds,
        "round_spread": spread(rounds),
        "inside_step_fraction": pooled["inside_step_fraction"],
    }


def _round_rates(row: dict[str, Any]) -> list[float]:
    if "round_medians_s" in row:
        return [row["batch"] / m for m in row["round_medians_s"]]
    return list(row.get("round_images_per_s", []))


def pairs(rows: dict[str, dict[str, Any]], batches: list[int], train_label: str) -> dict[str, str]:
    """Each of our paths and the TF path it is compared with."""
    out = {k: TF_INFERENCE for k in rows if k.startswith("ours: opt")}
    for b in batches:
        out[f"{train_label}, batch {b}"] = f"{TF_TRAINING}, batch {b}"
        if f"ours: demo's Lightning loop, batch {b}" in rows:
            out[f"ours: demo's Lightning loop, batch {b}"] = f"{TF_TRAINING}, batch {b}"
    return out


def ratios(rows: dict[str, dict[str, Any]], batches: list[int], train_label: str) -> dict[str, Any]:
    """``ours / TF`` for every pair (same batch), from pooled times, and ``paired``: per round (measured
    minutes apart at most, so under the same load), their median, min and max."""
    out: dict[str, Any] = {"paired": {}}
    for ours, tf in pairs(rows, batches, train_label).items():
        out[ours] = round(rows[ours]["images_per_s"] / rows[tf]["images_per_s"], 3)
        per_round = [a / b for a, b in zip(_round_rates(rows[ours]), _round_rates(rows[tf]))]
        if per_round:
            out["paired"][ours] = {
                "median": round(upper_median(per_round), 3),
                "min": round(min(per_round), 3),
                "max": round(max(per_round), 3),
            }
    return out


def run_versus(
    peer_python: Path | None,
    s: Settings,
    *,
    device: torch.device,
    rounds: int,
    lightning: Callable[[], dict[str, Any]] | None,
    log: Path | None,
    train_batches: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """:func:`versus_tf` with the peer started from ``peer_python`` (ours only when it is None).

    TF's intra-op and inter-op pools both get ``s.threads`` (TensorFlow's own default on a machine
    with that many cores; torch's inter-op pool is as large, and eager torch does not use it).
    """
    common = dict(device=device, rounds=rounds, lightning=lightning, train_batches=train_batches)
    if peer_python is None:
        return versus_tf(None, s, **common)
    with PeerProcess(peer_python, threads=s.threads, inter_op_threads=s.threads, log=log) as peer:
        return versus_tf(peer, s, **common)


__all__ = ["PeerError", "run_versus", "versus_tf"]

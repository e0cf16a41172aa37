"""The GPU path of the bench: ``python -m benchmarks --device cuda`` (``scripts/gpu_check.sh`` runs it).

Measured on the first CUDA device, every call synchronised, with
:func:`benchmarks.peer.time_calls`:

* inference images/s at ``--batch`` and 256: eager fp32 NCHW, ``optimize(precision="fp32")`` and
  ``optimize(precision="auto")`` (bf16 where the GPU has it, else fp16);
* training-step images/s at 32, ``--batch`` and 256: fp32 channels-last and the default
  (channels-last, ``precision=auto``);
* the demo's Lightning loop on the GPU (:mod:`benchmarks.lightning_loop`), with the CPU
  augmentation in the loader and with ``data.augment_on_device=true``: images/s, the time between
  steps (waiting for data: does the loader starve the GPU?) and the GPU's utilisation sampled by
  ``nvidia-smi`` while it runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lanmsff.errors import UserError
from lanmsff.utils.io import atomic_write_json

NO_CUDA = "no CUDA device (torch.cuda.is_available() is False)"
SMI_QUERY = "--query-gpu=utilization.gpu,memory.used"


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise UserError(f"--device cuda: {NO_CUDA}")
    return torch.device("cuda", torch.cuda.current_device())


def gpu_description(device: torch.device) -> dict[str, Any]:
    props = torch.cuda.get_device_properties(device)
    return {
        "gpu": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "bf16": torch.cuda.is_bf16_supported(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "count": torch.cuda.device_count(),
    }


class UtilisationSampler:
    """``nvidia-smi`` sampling the GPU's utilisation every ``interval_ms`` in the background."""

    def __init__(self, index: int = 0, interval_ms: int = 100) -> None:
        self.command = ["nvidia-smi", SMI_QUERY, "--format=csv,noheader,nounits", f"-lms={interval_ms}", f"-i={index}"]
        self.samples: list[tuple[float, float]] = []
        self.process: subprocess.Popen | None = None
        self.reason: str | None = None if shutil.which("nvidia-smi") else "nvidia-smi not found"

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue

    def __enter__(self) -> UtilisationSampler:
        if self.reason is None:
            self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self._thread.join(timeout=5)

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"available": False, "reason": self.reason or "no samples"}
        util = [u for u, _ in self.samples]
        return {
            "available": True,
            "samples": len(util),
            "mean_percent": round(sum(util) / len(util), 1),
            "max_percent": max(util),
            "memory_used_mib_max": max(m for _, m in self.samples),
        }


def _rate(fn: Callable[[], Any], batch: int, seconds: float) -> dict[str, Any]:
    from benchmarks.peer import time_calls

    timing = time_calls(fn, seconds, warmup=3)
    return {"images_per_s": round(batch / timing["median_s"], 1), "median_ms": round(1e3 * timing["median_s"], 3)}


def inference(model: torch.nn.Module, device: torch.device, batches: list[int], seconds: float) -> dict[str, Any]:
    from benchmarks.versus import inference_fn

    rows: dict[str, Any] = {}
    eager = model.to(device).eval()
    for batch in batches:
        x = torch.rand(batch, 1, 64, 64, device=device)

        def plain(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                eager(x)
            torch.cuda.synchronize(device)

        rows[f"eager fp32 NCHW, batch {batch}"] = _rate(plain, batch, seconds)
        for precision in ("fp32", "auto"):
            rows[f"optimize({precision}), batch {batch}"] = _rate(inference_fn(model, precision, x), batch, seconds)
    return rows


def training(model: torch.nn.Module, device: torch.device, batches: list[int], seconds: float) -> dict[str, Any]:
    from benchmarks.models import Settings, TrainVariant
    from benchmarks.versus import training_fn

    s, rows = Settings(), {}
    for batch in batches:
        for label, bf16 in (("fp32 channels-last", False), ("default (channels-last, precision auto)", True)):
            fn = training_fn(model, TrainVariant(True, bf16), batch, s, device)
            rows[f"{label}, batch {batch}"] = _rate(fn, batch, seconds)
    return rows


def lightning(data_dir: Path, identities: int, device: torch.device, steps: int) -> dict[str, Any]:
    """The demo's loop on the GPU, CPU augmentation vs ``augment_on_device``: rate, data wait, utilisation."""
    from benchmarks.lightning_loop import lightning_steps

    runs = {}
    for label, on_device in (("CPU augmentation in the loader", False), ("augment_on_device", True)):
        overrides = ("trainer=gpu", "trainer.devices=1", f"data.augment_on_device={str(on_device).lower()}")
        with UtilisationSampler(device.index or 0) as sampler:
            run = lightning_steps(data_dir, identities, steps=steps, warmup=5, progress_bar=False, overrides=overrides)
        run.pop("periods_s")
        runs[label] = {**run, "gpu_utilisation": sampler.summary()}
    return runs


def run_gpu(s: Any, data_dir: Path, identities: int) -> dict[str, Any]:
    """Everything above on the first CUDA device (``UserError`` without one)."""
    from benchmarks.models import build_model

    device = require_cuda()
    torch.manual_seed(0)
    model = build_model("lanmsff", s)
    seconds = 0.5 if s.quick else 3.0
    batches = sorted({s.batch, 256})
    return {
        "device": gpu_description(device),
        "inference": inference(model, device, batches, seconds),
        "training": training(model, device, sorted({32, s.batch, 256}), seconds),
        "lightning": lightning(data_dir, identities, device, steps=10 if s.quick else 60),
    }


def print_gpu(g: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    d = g["device"]
    title = f"GPU: {d['gpu']} ({d['memory_gib']} GiB, capability {d['capability']}, CUDA {d['cuda']})"
    table = Table(title=title)
    for column in ("part", "path", "images/s", "median ms"):
        table.add_column(column, justify="right" if column in ("images/s", "median ms") else "left")
    for part in ("inference", "training"):
        for label, row in g[part].items():
            table.add_row(part, label, f"{row['images_per_s']:,.1f}", f"{row['median_ms']:.2f}")
    console.print(table)
    table = Table(title="The demo's Lightning loop on the GPU (batch 32)")
    for column in ("data path", "images/s", "in step", "between steps ms", "GPU util mean / max"):
        table.add_column(column, justify="left" if column == "data path" else "right")
    for label, run in g["lightning"].items():
        util = run["gpu_utilisation"]
        shown = f"{util['mean_percent']:.0f}% / {util['max_percent']:.0f}%" if util["available"] else util["reason"]
        between = f"{run['between_steps_ms_per_step']:.1f}"
        table.add_row(label, f"{run['images_per_s']:,.1f}", f"{100 * run['inside_step_fraction']:.0f}%", between, shown)
    console.print(table)


# ----------------------------------------------------------------------------- scripts/gpu_check.sh's report
def _steps(out: Path) -> dict[str, dict[str, Any]]:
    steps = {}
    for line in (out / "steps.tsv").read_text().splitlines():
        name, rc, seconds = line.split("\t")
        steps[name] = {"exit": int(rc), "seconds": int(seconds)}
    return steps


def _tests(out: Path) -> dict[str, Any]:
    path = out / "tests.xml"
    if not path.is_file():
        return {"available": False}
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]}


def _demo(out: Path) -> dict[str, Any]:
    summaries = sorted((out / "demo" / "logs").glob("*/runs/*/summary.json"))
    if not summaries:
        return {"available": False}
    summary = json.loads(summaries[-1].read_text())
    metrics = summary.get("metrics", {})
    keep = ("test/acc", "test/f1_macro", "val/acc_best", "train/loss")
    return {"summary": str(summaries[-1]), **{k: metrics.get(k) for k in keep}, "status": summary.get("status")}


def report(out: Path) -> dict[str, Any]:
    """``gpu_check.json`` from the script's step records, test results, demo summary and GPU bench."""
    bench = out / "bench.json"
    result = {
        "steps": _steps(out),
        "tests": _tests(out),
        "demo": _demo(out),
        "bench": json.loads(bench.read_text()).get("gpu") if bench.is_file() else None,
        "nvidia_smi": (out / "nvidia-smi.csv").read_text().strip() if (out / "nvidia-smi.csv").is_file() else None,
    }
    result["ok"] = all(step["exit"] == 0 for step in result["steps"].values())
    atomic_write_json(out / "gpu_check.json", result)
    return result


def print_report(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="gpu_check")
    for column in ("step", "exit", "seconds", "detail"):
        table.add_column(column)
    t, demo = result["tests"], result["demo"]
    demo_text = f"test acc {demo.get('test/acc')}, status {demo.get('status')}" if demo.get("summary") else "no summary"
    details = {
        "tests": f"{t.get('passed')} passed, {t.get('failures', 0) + t.get('errors', 0)} failed, "
        f"{t.get('skipped')} skipped"
        if t.get("tests") is not None
        else "no junit file",
        "demo": demo_text,
        "bench": "see the tables below" if result["bench"] else "no result",
    }
    for name, step in result["steps"].items():
        table.add_row(name, str(step["exit"]), str(step["seconds"]), details.get(name, ""))
    console.print(table)
    if result["bench"]:
        print_gpu(result["bench"], console)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu OUT_DIR``: write OUT_DIR/gpu_check.json, print it; 1 if a step failed."""
    from rich.console import Console

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "benchmarks/out/gpu_check")
    result = report(out)
    print_report(result, Console(width=150))
    print(f"Results: {out / 'gpu_check.json'}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the fast inference path, training steps and the data path (``make bench``).

    python -m benchmarks [--quick] [--models lanmsff,resnet18] [--threads 2] [--batch 64]
                         [--with-preprocess] [--results-dir benchmarks/results] [--out run.json]

Everything is measured in one run, with ``torch.set_num_threads(--threads)``, as medians of
``torch.utils.benchmark.Timer.blocked_autorange`` and as ratios against the plain eager fp32 NCHW
model of the same run:

* inference images/s at ``--batch``: channels-last, ``optimize`` (fp32 and ``auto``; whole batch
  vs micro-batches; eager, TorchScript, inductor), ONNX Runtime; batch-1 latency;
* training steps (forward + backward + Adam) in fp32/bf16, NCHW/channels-last, with each CPU kernel
  and with all of them (``model.cpu_kernels=auto``, the training default on CPUs); each variant's
  convolution weight gradients audited against float64, and the bf16 loss over ``check_steps``
  steps on synthetic faces;
* params, FLOPs and achieved GFLOP/s of LANMSFF and the timm baselines;
* bf16 top-1 agreement with fp32 of a briefly trained LANMSFF;
* the cached in-memory training loader with online augmentation (0 and 2 workers);
* the same baseline and best variants again after :func:`lanmsff.runtime.process.tune_glibc_malloc`
  (last, since it changes the process for good);
* ours against the authors' Keras/TensorFlow model (:mod:`benchmarks.versus`): TF runs in a
  subprocess of ``.venv-peer/bin/python`` (``make bench-peer``; ``--peer-python``), measured
  interleaved with our ``optimize`` and default training step in the same run, with the same thread
  count, and our step through the demo's Lightning loop at batch 32 (:mod:`benchmarks.lightning_loop`).
  Without the peer (or with ``--quick``, unless ``--peer``) our side is measured alone and the
  results say ``peer skipped: ...``.

``--device cuda`` measures the GPU path instead (:mod:`benchmarks.gpu`). ``python -m benchmarks`` sets
the entry points' short OpenMP spin count before torch loads (``prepare_process(tune_allocator=False)``), not their
allocator tuning: that is measured.

The run is added to its results file, ``benchmarks/results/<cpu-kind>-<YYYY-MM-DD>.json`` (one per
CPU kind and date, :mod:`benchmarks.result_files`; ``--results-dir`` for another folder; a ``--quick``
run only with ``--results-dir``; never with ``--no-record``), from which ``make speed-tables``
(:mod:`benchmarks.tables`) writes ``docs/speed-results.md``. ``--out`` also writes the run alone to a
file. A summary is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from benchmarks import models as bm
from benchmarks.models import BASELINE, MODEL_NAMES, Settings
from benchmarks.peer import PeerError, find_peer_python
from benchmarks.result_files import RESULTS_DIR, ResultsError, add_run, best_safe_training, cpu_kind, first_auto, today
from lanmsff.errors import EXIT_USER_ERROR, UserError
from lanmsff.runtime.hardware import cpu_description, cpu_has_native_bf16
from lanmsff.runtime.process import tune_glibc_malloc
from lanmsff.utils.io import atomic_write_json

TARGETS = {  # the targets: ratio against eager fp32 NCHW at batch 64 on 2 cores
    "inference_fp32": 3.0,
    "inference_auto_bf16": 6.0,
    "training_safe": 2.5,
}
AUDIT_BATCH = 16


@dataclass
class Faces:
    """Synthetic faces: training part and held-out part (val + test), as float tensors and uint8."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    heldout_x: torch.Tensor
    heldout_y: torch.Tensor
    uint8: np.ndarray


# ----------------------------------------------------------------------------- set-up
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="LANMSFF only, short measurements (a smoke test)")
    parser.add_argument("--models", default=None, help=f"comma-separated, from: {', '.join(MODEL_NAMES)}")
    parser.add_argument(
        "--results-dir",
        default=None,
        type=Path,
        help="add the run to <DIR>/<cpu-kind>-<date>.json (default: benchmarks/results; with --quick only when given)",
    )
    parser.add_argument("--no-record", action="store_true", help="add the run to no results file")
    parser.add_argument("--out", default=None, type=Path, help="also write this run alone to OUT (JSON)")
    parser.add_argument(
        "--note", action="append", default=[], help="a sentence kept with the run (e.g. that the machine was shared)"
    )
    parser.add_argument("--threads", default=2, type=int, help="torch threads (default: %(default)s)")
    parser.add_argument("--batch", default=None, type=int, help="batch size (default: 64; 16 with --quick)")
    parser.add_argument("--data-dir", default=None, type=Path, help="synthetic faces (default: data/bench_faces)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to compile)")
    parser.add_argument("--with-preprocess", action="store_true", help="also time KDEF preprocessing (slow)")
    parser.add_argument("--peer", action="store_true", help="measure the TensorFlow peer also with --quick")
    parser.add_argument("--no-peer", action="store_true", help="do not measure the TensorFlow peer")
    parser.add_argument(
        "--peer-python", default=None, help="python of a venv with tensorflow-cpu (default: .venv-peer/bin/python)"
    )
    parser.add_argument("--rounds", default=None, type=int, help="interleaved rounds against TF (default: 3; 1 quick)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu, or cuda: the GPU path")
    parser.add_argument(
        "--emulated-bf16",
        action="store_true",
        help="also measure bf16 on a CPU without native bf16 (emulated: many minutes, and never used by auto)",
    )
    return parser.parse_args(argv)


QUICK_BATCH = 16


def settings_from(args: argparse.Namespace) -> Settings:
    batch = args.batch or (QUICK_BATCH if args.quick else Settings.batch)
    if args.threads < 1 or batch < 1:
        raise UserError(f"--threads ({args.threads}) and --batch ({batch}) must be at least 1")
    bf16 = cpu_has_native_bf16() or args.emulated_bf16
    if args.quick:
        short = dict(min_run_time=0.3, train_run_time=1.0, check_steps=3)
        return Settings(batch=batch, threads=args.threads, quick=True, bf16=bf16, **short)
    return Settings(batch=batch, threads=args.threads, bf16=bf16)


BF16_SKIPPED = (
    "bf16 skipped: this CPU has no native bf16 (AVX-512 BF16 / AMX), so bf16 would only be emulated "
    "(slow, and never chosen by precision=auto); --emulated-bf16 measures it anyway"
)


def model_names(args: argparse.Namespace) -> list[str]:
    if not args.models:
        return ["lanmsff"] if args.quick else list(MODEL_NAMES)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown or not names:
        raise UserError(f"--models: unknown {', '.join(unknown) or '(none given)'}; choices: {', '.join(MODEL_NAMES)}")
    return names


def machine(s: Settings) -> dict[str, Any]:
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    return {
        **cpu_description(),
        "threads": s.threads,
        "torch": torch.__version__,
        "onnxruntime": ort_version,
        "python": platform.python_version(),
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MKL_NUM_THREADS")
BUSY = (
    "the machine was busy (load average {load:.1f} on {cores} cores): torch's OpenMP threads spin-wait for "
    "each other and lose far more than TensorFlow's thread pool when cores are shared, so these ratios "
    "understate ours; compare on an idle machine"
)


def isa_limit_warning(limits: dict[str, str]) -> str | None:
    """A warning when the run capped torch's or oneDNN's instruction set (``ISA_LIMIT_ENV``)."""
    if not limits:
        return None
    settings = " ".join(f"{name}={value}" for name, value in limits.items())
    return (
        f"kernels limited by {settings}: these are the code paths of a smaller CPU on this one, and their "
        "speed predicts nothing about that CPU (docs/speed.md)"
    )


def busy_warning(load: float, cores: int) -> str | None:
    """A warning when the run shared its cores (1-minute load above the core count)."""
    return BUSY.format(load=load, cores=cores) if load > cores + 0.5 else None


def load_faces(data_dir: Path, identities: int, s: Settings) -> Faces:
    """Generate (once) and preprocess a synthetic KDEF tree; split as the data module does."""
    from benchmarks.lightning_loop import BENCH_FOLDS
    from lanmsff.data.datamodule import SyntheticKDEFDataModule

    dm = SyntheticKDEFDataModule(
        data_dir, identities=identities, num_folds=BENCH_FOLDS, face_crop="box", image_size=s.image_size
    )
    dm.prepare_data()
    dm.setup("fit")

    def tensors(parts: list) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.concatenate([p.images for p in parts])
        labels = np.concatenate([p.labels for p in parts])
        return torch.from_numpy(images).float().div_(255).unsqueeze(1), torch.from_numpy(labels)

    train_x, train_y = tensors([dm.data_train])
    heldout_x, heldout_y = tensors([dm.data_val, dm.data_test])
    uint8 = np.concatenate([dm.data_train.images, dm.data_val.images, dm.data_test.images])
    return Faces(train_x, train_y, heldout_x, heldout_y, uint8)


# ----------------------------------------------------------------------------- phases
def bench_model(name: str, s: Settings, *, first: bool, compile_: bool) -> dict[str, Any]:
    """Costs, inference, latency, training and the gradient audit of one model."""
    torch.manual_seed(0)
    model = bm.build_model(name, s)
    result: dict[str, Any] = {"name": name, **bm.model_costs(model, s)}
    full = first and not s.quick
    ms = s if first else s.scaled(0.5)
    result["inference"] = bm.bench_inference(model, ms, full=full, compile_=compile_ and first, onnx=first)
    variants = bm.training_variants(model, bf16=s.bf16, quick=s.quick)
    if not first:
        variants = {k: v for k, v in variants.items() if k in (BASELINE, "channels-last fp32")} | {
            k: v for k, v in variants.items() if v.channels_last and v.bf16
        }
    result["training"] = bm.bench_training(model, ms, variants)
    x = torch.rand(AUDIT_BATCH, s.in_channels, s.image_size, s.image_size, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, s.num_classes, (AUDIT_BATCH,), generator=torch.Generator().manual_seed(1))
    for label, variant in variants.items():
        result["training"][label]["conv_grad_audit"] = bm.audit_conv_weight_grads(model, variant, x, y)
    return result


def bf16_loss_checks(faces: Faces, s: Settings) -> dict[str, Any]:
    """LANMSFF (reference settings) trained ``s.check_steps`` steps in each bf16 variant on synthetic faces."""
    torch.manual_seed(0)
    model = bm.build_model("lanmsff", s)
    variants = {k: v for k, v in bm.training_variants(model, quick=s.quick).items() if v.bf16}
    return {
        label: bm.loss_check(model, variant, faces.train_x, faces.train_y, steps=s.check_steps, batch=s.batch)
        for label, variant in variants.items()
    }


def agreement(faces: Faces, s: Settings) -> dict[str, Any]:
    """bf16 vs fp32 top-1 agreement of a LANMSFF trained a few epochs (fp32, channels-last) on the faces."""
    torch.manual_seed(0)
    model = lanmsff_short_run(s)
    epochs = 1 if s.quick else 5
    start = time.perf_counter()
    trained = bm.train_briefly(model, faces.train_x, faces.train_y, epochs=epochs)
    train_s = time.perf_counter() - start
    flipped = faces.heldout_x.flip(-1)
    return {
        "training": {"epochs": epochs, "images": len(faces.train_x), "seconds": round(train_s, 1)},
        "heldout": bm.bf16_agreement(trained, faces.heldout_x, faces.heldout_y),
        "heldout_and_flipped": bm.bf16_agreement(
            trained, torch.cat([faces.heldout_x, flipped]), torch.cat([faces.heldout_y, faces.heldout_y])
        ),
        "training_images": bm.bf16_agreement(trained, faces.train_x, faces.train_y),
    }


def lanmsff_short_run(s: Settings) -> torch.nn.Module:
    """LANMSFF as the demo trains it (BatchNorm momentum 0.1 for short runs)."""
    from lanmsff.models import LANMSFF

    return LANMSFF(num_classes=s.num_classes, in_channels=s.in_channels, image_size=s.image_size, bn_momentum=0.1)


def lightning_run(data_dir: Path, identities: int, s: Settings) -> functools.partial:
    """One timed run of the demo's Lightning loop at batch 32 on the bench's faces."""
    from benchmarks.lightning_loop import lightning_steps

    steps, warmup = (4, 2) if s.quick else (20, 3)
    return functools.partial(lightning_steps, data_dir, identities, steps=steps, warmup=warmup)


def peer_python(args: argparse.Namespace) -> tuple[Path | None, str]:
    """The peer's python, or None and why it is skipped."""
    if args.no_peer:
        return None, "--no-peer"
    if args.quick and not args.peer and not args.peer_python:
        return None, "--quick (add --peer to measure TensorFlow)"
    return find_peer_python(args.peer_python)


def versus_phase(args: argparse.Namespace, s: Settings, data_dir: Path, identities: int) -> dict[str, Any]:
    """Ours vs the authors' TF (interleaved rounds), after the allocator tuning that train.py applies."""
    from benchmarks.versus import run_versus

    allocator_tuned = tune_glibc_malloc()
    load_start = os.getloadavg()[0]
    python, where = peer_python(args)
    rounds = args.rounds or (1 if s.quick else 3)
    common = dict(device=torch.device("cpu"), rounds=rounds, lightning=lightning_run(data_dir, identities, s))
    log = Path(tempfile.mkdtemp(prefix="lanmsff-peer-")) / "tensorflow.log"  # TF's own log, kept for failures
    skipped = None if python else f"peer skipped: {where}"
    try:
        result = run_versus(python, s, log=log, **common)
    except PeerError as err:
        skipped = f"peer skipped: the TensorFlow peer ({python}) failed: {err}"
        result = run_versus(None, s, log=None, **common)
    result.update(allocator_tuned=allocator_tuned, peer_python=str(python) if python and not skipped else None)
    result["peer_log"] = str(log) if python else None
    result["load_average_1min"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    if warning := busy_warning(max(result["load_average_1min"]), s.threads):
        result["busy_warning"] = warning
    if skipped:
        result["peer_skipped"] = skipped
    return result


def data_path(faces: Faces, s: Settings) -> dict[str, Any]:
    return {f"num_workers={w}": bm.bench_data_path(faces.uint8, s, workers=w) for w in (0, 2)}


def tuned_allocator(lanmsff: dict[str, Any], s: Settings) -> dict[str, Any]:
    """The baseline and the default optimised / best safe variants again after tune_glibc_malloc()."""
    if not tune_glibc_malloc():
        return {"applied": False}
    torch.manual_seed(0)
    model = bm.build_model("lanmsff", s)
    default_inference = lanmsff["inference"]["throughput"][BASELINE]["images_per_s"]
    default_training = lanmsff["training"][BASELINE]["images_per_s"]
    inference = bm.bench_inference(model, s, full=False, compile_=False, onnx=False, latency=False)["throughput"]
    best = best_safe_training(lanmsff["training"])
    variants = {k: v for k, v in bm.TRAIN_VARIANTS.items() if k in (BASELINE, best)}
    training = bm.bench_training(model, s, variants)
    for rows, default in ((inference, default_inference), (training, default_training)):
        for row in rows.values():
            row["ratio_vs_default_allocator_baseline"] = round(row["images_per_s"] / default, 3)
    return {"applied": True, "inference": inference, "training": training}


def evaluate_targets(results: dict[str, Any]) -> dict[str, Any]:
    """Measured ratios of LANMSFF against the issue's targets (nothing here is assumed)."""
    lanmsff = results["models"]["lanmsff"]
    rows = lanmsff["inference"]["throughput"]
    fp32 = {k: v["ratio"] for k, v in rows.items() if k.startswith("optimize(fp32")}
    auto = {k: v["ratio"] for k, v in rows.items() if k.startswith("optimize(auto")}
    best_train = best_safe_training(lanmsff["training"], results.get("bf16_loss_check"))
    train_ratio = lanmsff["training"][best_train]["ratio"]
    out = {
        "inference_fp32": _target(TARGETS["inference_fp32"], fp32.get("optimize(fp32)"), fp32),
        "inference_auto_bf16": _target(TARGETS["inference_auto_bf16"], auto.get(first_auto(auto) or ""), auto),
        "training_safe": _target(TARGETS["training_safe"], train_ratio, {best_train: train_ratio}),
    }
    if not results["machine"]["native_bf16"]:
        out["inference_auto_bf16"]["note"] = "not applicable: this CPU has no native bf16"
    return out


def _target(target: float, default: float | None, candidates: dict[str, float]) -> dict[str, Any]:
    best = max(candidates, key=lambda k: candidates[k], default=None)
    return {
        "target": target,
        "default_ratio": default,
        "best": best,
        "best_ratio": candidates.get(best) if best else None,
        "met_by_default": bool(default is not None and default >= target),
        "met_by_best": bool(best is not None and candidates[best] >= target),
    }


# ----------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> dict[str, Any]:
    s = settings_from(args)
    names = model_names(args)
    if args.device == "cuda":
        from benchmarks.gpu import require_cuda

        require_cuda()
    torch.set_num_threads(s.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    console = Console(stderr=True)
    description = machine(s)
    results: dict[str, Any] = {
        "date": today(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(args.argv),
        "cpu_kind": cpu_kind(description),
        **({"notes": list(args.note)} if args.note else {}),
        "machine": description,
        "settings": s.__dict__,
        "models": {},
    }
    started = time.perf_counter()
    phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str, status: bool = True) -> Iterator[None]:
        start = time.perf_counter()
        with console.status(name) if status else contextlib.nullcontext():
            yield
        phases[name] = round(time.perf_counter() - start, 1)

    data_dir = args.data_dir or Path(os.environ.get("LANMSFF_ROOT", ".")) / "data" / "bench_faces"
    identities = 4 if s.quick else 8
    with phase("synthetic faces"):
        faces = load_faces(data_dir, identities, s)
    if args.device == "cuda":
        run_cuda(results, faces, data_dir, identities, s, phase)
        results.update(phase_seconds=phases, seconds=round(time.perf_counter() - started, 1))
        return results
    compile_ = not args.no_compile and not s.quick
    for index, name in enumerate(names):
        with phase(f"model {name}"):
            results["models"][name] = bench_model(name, s, first=index == 0, compile_=compile_)
    if not s.bf16:
        results["skipped"] = {"bf16": BF16_SKIPPED}
        console.print(BF16_SKIPPED)
    if "lanmsff" in results["models"] and s.bf16:
        with phase("bf16 loss check"):
            results["bf16_loss_check"] = bf16_loss_checks(faces, s)
        with phase("bf16 agreement"):
            results["bf16_agreement"] = agreement(faces, s)
    with phase("data path"):
        results["data_path"] = data_path(faces, s)
    if "lanmsff" in results["models"]:
        results["targets"] = evaluate_targets(results)
        with phase("tuned allocator"):
            results["tuned_allocator"] = tuned_allocator(results["models"]["lanmsff"], s)
    console.print("versus TF: ours and the authors' TensorFlow, interleaved (the demo's Lightning loop shows its bar)")
    with phase("versus TF", status=False):  # Lightning's progress bar is part of what is measured
        results["versus_tf"] = versus_phase(args, s, data_dir, identities)
    if "peer_skipped" in results["versus_tf"]:
        results.setdefault("skipped", {})["peer"] = results["versus_tf"]["peer_skipped"]
        console.print(results["versus_tf"]["peer_skipped"])
    if args.with_preprocess:
        from benchmarks.preprocess import run as run_preprocess

        with phase("preprocessing"):
            results["preprocess"] = run_preprocess(Path("data/kdef_synthetic_full"))
    results["phase_seconds"] = phases
    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def run_cuda(
    results: dict[str, Any], faces: Faces, data_dir: Path, identities: int, s: Settings, phase: Callable
) -> dict[str, Any]:
    """``--device cuda``: the GPU path (:mod:`benchmarks.gpu`) and the CPU loader's rate."""
    from benchmarks.gpu import run_gpu

    results["skipped"] = {"peer": "peer skipped: --device cuda (the peer is TensorFlow-CPU)"}
    with phase("gpu", status=False):
        results["gpu"] = run_gpu(s, data_dir, identities)
    with phase("data path"):
        results["data_path"] = data_path(faces, s)
    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return results


# ----------------------------------------------------------------------------- printing
def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_results(results: dict[str, Any], console: Console) -> None:
    m = results["machine"]
    console.print(
        f"[bold]{m['cpu']}[/] ({m.get('cpu_id', 'unknown')}), {m['cores']} cores, {m['threads']} threads, "
        f"torch {m['torch']}, capability {m['capability']}, native bf16: {m['native_bf16']}, "
        f"load {m['load_average_start']}"
    )
    if warning := isa_limit_warning(m.get("isa_limits", {})):
        console.print(f"[yellow]{warning}[/]")
    for reason in results.get("skipped", {}).values():
        console.print(reason)
    if "gpu" in results:
        from benchmarks.gpu import print_gpu

        print_gpu(results["gpu"], console)
    for name, r in results["models"].items():
        _print_model(name, r, results, console)
    if results["models"]:
        _print_summary(results, console)
    for key, printer in (
        ("bf16_agreement", _print_agreement),
        ("data_path", _print_data),
        ("tuned_allocator", _print_allocator),
        ("versus_tf", _print_versus),
        ("targets", _print_targets),
        ("preprocess", _print_preprocess),
    ):
        if key in results:
            printer(results[key], console)


def _print_model(name: str, r: dict[str, Any], results: dict[str, Any], console: Console) -> None:
    s = results["settings"]
    table = Table(title=f"{name}: inference, batch {s['batch']} ({r['flops'] / 1e9:.3f} GFLOPs/image)")
    for column in ("variant", "images/s", "ratio", "GFLOP/s"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for label, row in r["inference"]["throughput"].items():
        table.add_row(label, _fmt(row["images_per_s"]), _fmt(row["ratio"], 2) + "x", _fmt(row["gflops_per_s"]))
    latency = ", ".join(f"{k} {v:.2f} ms" for k, v in r["inference"]["latency_ms"].items())
    table.caption = f"batch-1 latency: {latency}"
    console.print(table)
    loss = results.get("bf16_loss_check", {}) if name == "lanmsff" else {}
    table = Table(title=f"{name}: training step (forward + backward + Adam), batch {s['batch']}")
    for column in ("variant", "images/s", "ratio", "conv weight grads", "bf16 loss"):
        table.add_column(column, justify="left" if column in ("variant", "conv weight grads") else "right")
    for label, row in r["training"].items():
        audit = row.get("conv_grad_audit", {})
        verdict = "ok" if audit.get("ok") else f"WRONG: {len(audit.get('bad', []))} convs"
        verdict += f" (max rel err {_fmt(audit.get('max_rel_err'), 4)})"
        check = loss.get(label)
        finite = "-" if check is None else "finite" if check["finite"] else f"NaN at {check['first_nonfinite_step']}"
        table.add_row(label, _fmt(row["images_per_s"]), _fmt(row["ratio"], 2) + "x", verdict, finite)
    console.print(table)


def _print_summary(results: dict[str, Any], console: Console) -> None:
    table = Table(title="Models (inference ratio vs eager fp32 NCHW; training: best variant with correct gradients)")
    columns = ("model", "params", "GFLOPs", "eager img/s", "opt fp32", "opt auto", "GFLOP/s opt", "train", "train safe")
    for column in columns:
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, r in results["models"].items():
        rows = r["inference"]["throughput"]
        fp32, auto = rows["optimize(fp32)"], next(v for k, v in rows.items() if k.startswith("optimize(auto="))
        best = best_safe_training(r["training"], results.get("bf16_loss_check") if name == "lanmsff" else None)
        table.add_row(
            name,
            f"{r['params']:,}",
            f"{r['flops'] / 1e9:.3f}",
            _fmt(rows[BASELINE]["images_per_s"]),
            f"{fp32['images_per_s']:.0f} ({fp32['ratio']:.2f}x)",
            f"{auto['images_per_s']:.0f} ({auto['ratio']:.2f}x)",
            _fmt(max(fp32["gflops_per_s"], auto["gflops_per_s"])),
            _fmt(r["training"][BASELINE]["images_per_s"]),
            f"{r['training'][best]['images_per_s']:.0f} ({r['training'][best]['ratio']:.2f}x)",
        )
    console.print(table)


def _print_agreement(a: dict[str, Any], console: Console) -> None:
    table = Table(title=f"bf16 vs fp32, LANMSFF trained {a['training']['epochs']} epochs on synthetic faces")
    for column in ("images", "count", "top-1 agreement", "max |Δp|", "acc fp32", "acc bf16"):
        table.add_column(column, justify="left" if column == "images" else "right")
    for key in ("heldout", "heldout_and_flipped", "training_images"):
        r = a[key]
        table.add_row(
            key,
            str(r["images"]),
            f"{100 * r['top1_agreement']:.2f}%",
            f"{r['max_abs_prob_diff']:.4f}",
            f"{100 * r['accuracy_fp32']:.1f}%",
            f"{100 * r['accuracy_bf16']:.1f}%",
        )
    console.print(table)


def _print_data(d: dict[str, Any], console: Console) -> None:
    table = Table(title="Data path: in-memory faces + online augmentation, DataLoader batch 64")
    table.add_column("loader")
    table.add_column("images/s", justify="right")
    for key, r in d.items():
        table.add_row(key, _fmt(r["images_per_s"]))
    console.print(table)


def _print_allocator(t: dict[str, Any], console: Console) -> None:
    if not t.get("applied"):
        console.print("glibc malloc tuning not available here")
        return
    table = Table(title="After tune_glibc_malloc() (process-wide): LANMSFF")
    for column in ("", "variant", "images/s", "ratio", "vs default-allocator baseline"):
        table.add_column(column, justify="left" if column in ("", "variant") else "right")
    for part in ("inference", "training"):
        for label, row in t[part].items():
            versus_default = f"{row['ratio_vs_default_allocator_baseline']:.2f}x"
            table.add_row(part, label, _fmt(row["images_per_s"]), f"{row['ratio']:.2f}x", versus_default)
    console.print(table)


def _print_versus(v: dict[str, Any], console: Console) -> None:
    threads = ", ".join(f"{k} {n}" for k, n in v["threads"].items())
    peer = v.get("peer")
    who = f"TensorFlow {peer['tensorflow']}, Keras {peer['keras']}" if peer else "TF not measured"
    table = Table(title=f"LANMSFF vs the authors' Keras/TF model ({who}), same run, {v['rounds']} interleaved rounds")
    for column in ("path", "batch", "images/s", "ours / TF", "per round (min-max)", "round spread", "cores busy"):
        table.add_column(column, justify="left" if column == "path" else "right")
    ratios = v.get("ratios", {})
    for label, row in v["rows"].items():
        busy = [c for c in row.get("cpu_per_wall", []) if c is not None]
        table.add_row(
            label,
            str(row["batch"]),
            _fmt(row["images_per_s"]),
            f"{ratios[label]:.2f}x" if label in ratios else "",
            _paired(ratios.get("paired", {}).get(label)),
            f"{100 * row['round_spread']:.1f}%",
            f"{sum(busy) / len(busy):.2f}" if busy else "-",
        )
    lightning = v.get("lightning")
    table.caption = f"threads: {threads}; allocator tuned: {v.get('allocator_tuned')}" + (
        f"; Lightning loop: {100 * lightning['inside_step_fraction']:.1f}% of each step inside training_step hooks, "
        f"{lightning['precision']}, progress bar {lightning['progress_bar']}"
        if lightning
        else ""
    )
    console.print(table)
    if "busy_warning" in v:  # (a skipped peer is among the skipped reasons print_results shows first)
        console.print(v["busy_warning"])


def _paired(p: dict[str, float] | None) -> str:
    return f"{p['median']:.2f}x ({p['min']:.2f}-{p['max']:.2f})" if p else ""


def _print_targets(targets: dict[str, Any], console: Console) -> None:
    table = Table(title="Targets (LANMSFF, ratio vs eager fp32 NCHW, same run)")
    for column in ("target", "wanted", "default", "best", "met"):
        table.add_column(column, justify="left" if column in ("target", "best") else "right")
    for key, t in targets.items():
        best = f"{t['best']} {t['best_ratio']:.2f}x" if t["best"] else "-"
        met = "yes" if t["met_by_default"] else ("with best" if t["met_by_best"] else "no")
        note = f" ({t['note']})" if "note" in t else ""
        table.add_row(key, f"{t['target']:.1f}x", _fmt(t["default_ratio"], 2), best, met + note)
    console.print(table)


def _print_preprocess(results: dict[str, Any], console: Console) -> None:
    from benchmarks.preprocess import results_table

    console.print(results_table(results))


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        args.argv = argv
        results = run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    print_results(results, Console(width=max(Console().width, 150)))
    if args.out:
        atomic_write_json(args.out, results)
        print(f"Results: {args.out}")
    if (folder := results_dir(args)) is not None:
        try:
            path = add_run(folder, results)
        except ResultsError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER_ERROR
        print(f"Results file: {path} (make speed-tables renders it into docs/speed-results.md)")
    return 0


def results_dir(args: argparse.Namespace) -> Path | None:
    """The folder of the results file the run is added to, or None (``--no-record``; ``--quick`` without a folder)."""
    if args.no_record or (args.quick and args.results_dir is None):
        return None
    return args.results_dir or RESULTS_DIR


def command_line(argv: list[str] | None) -> str:
    """The command that ran, for the record (the peer's python path left out)."""
    words = list(sys.argv[1:] if argv is None else argv)
    if "--peer-python" in words:
        index = words.index("--peer-python")
        words[index : index + 2] = ["--peer-python", "<python>"]
    return " ".join(["python -m benchmarks", *words])


if __name__ == "__main__":
    raise SystemExit(main())

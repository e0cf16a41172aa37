"""Model speed and numerics for ``python -m benchmarks``.

Every speed is the median of :meth:`torch.utils.benchmark.Timer.blocked_autorange`, and every
ratio is taken against the plain eager fp32 NCHW model measured in the same run (its timings before
and after the variants are pooled, so that a drift of the machine during the run shows in neither
direction). Nothing here is asserted: the tests only check that the numbers exist and are positive.

Besides speed, this module holds the numerical checks behind the choice of training settings:

* :func:`audit_conv_weight_grads` recomputes the weight gradient of every convolution of one
  training step in float64 from the very tensors the step used, which exposes kernels that
  return wrong gradients. On the CPUs we measured (AVX-512 BF16, with and without AMX; torch 2.14.1) the
  ``jit_bf16`` backward-weights kernel is wrong for *dilated* convolutions in channels-last
  layout at 32x32 and larger (NaN, inf or huge relative errors); LANMSFF's L path (dilation 2) hits it.
* :class:`lanmsff.training.cpu_kernels.dilated_conv.SpaceToBatchConv2d` (the training default on CPUs) computes
  them as undilated convolutions of their inputs' sub-grids, so no dilated bf16 kernel runs;
  :class:`~lanmsff.training.cpu_kernels.dilated_conv.NCHWWeightGradConv2d` (its fallback, and the earlier default)
  keeps them dilated and computes only their weight gradient in NCHW layout, where the kernel is right.
* :class:`lanmsff.training.cpu_kernels.batch_norm.AlignedRowsBatchNorm2d` (the training default on CPUs) trains
  BatchNorm on rows of whole vectors where the channel count leaves a partial one.
* the variants "all CPU kernels" apply :func:`lanmsff.training.cpu_kernels.apply_cpu_kernels` with
  ``model.cpu_kernels=auto``, as training does on a CPU (the two above, the integer dropout mask and the
  fused PWFS average): the training default.
* :func:`loss_check` trains a few steps on synthetic faces and reports whether the loss stays finite.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.benchmark import Timer

from lanmsff.errors import ConfigError
from lanmsff.inference import optimize
from lanmsff.models import LANMSFF
from lanmsff.models.baselines import BASELINES, timm_model
from lanmsff.models.introspection import count_flops, count_params
from lanmsff.runtime.precision import autocast_dtype
from lanmsff.training.cpu_kernels import apply_cpu_kernels
from lanmsff.training.cpu_kernels.audit import audit_conv_weight_grads as audit_step
from lanmsff.training.cpu_kernels.audit import finite_or_str
from lanmsff.training.cpu_kernels.batch_norm import aligned_rows, convert_aligned_rows_batch_norm, is_plain_batch_norm
from lanmsff.training.cpu_kernels.dilated_conv import (
    convert_nchw_weight_grads,
    convert_space_to_batch,
    is_dilated_conv,
)

MODEL_NAMES = ("lanmsff", *BASELINES)
BASELINE = "eager fp32 NCHW"
ONNX_LABEL = "optimize(fp32, onnxruntime)"
ALIGNED_FP32 = "channels-last fp32, dilated as space-to-batch, BatchNorm on aligned rows"
ALIGNED_BF16 = "channels-last + bf16, dilated as space-to-batch, BatchNorm on aligned rows"
DEFAULT_FP32 = "channels-last fp32, all CPU kernels"
DEFAULT_BF16 = "channels-last + bf16, all CPU kernels"


@dataclass(frozen=True)
class Settings:
    """What is measured and how long."""

    batch: int = 64
    image_size: int = 64
    in_channels: int = 1
    num_classes: int = 7
    threads: int = 2
    min_run_time: float = 3.0  # seconds per inference measurement
    train_run_time: float = 8.0  # seconds per training-step measurement
    check_steps: int = 30  # training steps of the bf16 loss check
    quick: bool = False
    bf16: bool = True  # measure bf16 training (False where the CPU would only emulate it)

    def scaled(self, factor: float) -> Settings:
        """The same settings with shorter measurements (for the baselines)."""
        times = {"min_run_time": self.min_run_time * factor, "train_run_time": self.train_run_time * factor}
        return Settings(**{**self.__dict__, **times})


@dataclass
class Timing:
    """Raw per-call times of one measurement; ``median_s`` is what gets reported."""

    times: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return float(np.median(self.times))

    @property
    def iqr_s(self) -> float:
        q1, q3 = np.percentile(self.times, [25, 75])
        return float(q3 - q1)

    def merged(self, other: Timing) -> Timing:
        return Timing(self.times + other.times)


def measure(fn: Callable[[], Any], min_run_time: float, *, warmup: int = 2) -> Timing:
    """Per-call times of ``fn`` from ``Timer.blocked_autorange`` after ``warmup`` calls.

    The timer runs with torch's current thread count: ``Timer`` itself defaults to one thread and
    would otherwise time every torch path single-threaded (while ONNX Runtime keeps its own threads).
    """
    for _ in range(warmup):
        fn()
    timer = Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(list(m.times))


def rate(timing: Timing, images: int) -> float:
    return images / timing.median_s


# ----------------------------------------------------------------------------- models
def build_model(name: str, s: Settings) -> nn.Module:
    """A freshly initialised model by bench name (``lanmsff`` or a key of ``BASELINES``)."""
    geometry = dict(num_classes=s.num_classes, in_channels=s.in_channels, image_size=s.image_size)
    if name == "lanmsff":
        return LANMSFF(**geometry)
    if name in BASELINES:
        return timm_model(BASELINES[name], **geometry)
    raise ConfigError(f"--models: unknown model {name!r}; choices: {', '.join(MODEL_NAMES)}")


def has_dilated_convs(model: nn.Module) -> bool:
    return any(is_dilated_conv(m) for m in model.modules())


def has_unaligned_batch_norms(model: nn.Module) -> bool:
    """Whether ``model`` has a plain BatchNorm2d whose channels leave a partial vector (``aligned_bn`` changes it)."""
    return any(is_plain_batch_norm(m) and aligned_rows(m.num_features) > 1 for m in model.modules())


def model_costs(model: nn.Module, s: Settings) -> dict[str, Any]:
    """Parameters and forward FLOPs per image (torch's flop counter; a multiply-add is 2 FLOPs)."""
    flops = count_flops(model, (s.in_channels, s.image_size, s.image_size))
    return {"params": count_params(model), "flops": int(flops)}


def _row(timing: Timing, images: int, flops_per_image: float, baseline: float | None) -> dict[str, float]:
    per_s = rate(timing, images)
    row = {
        "images_per_s": round(per_s, 2),
        "median_ms": round(timing.median_s * 1e3, 3),
        "iqr_ms": round(timing.iqr_s * 1e3, 3),
        "gflops_per_s": round(per_s * flops_per_image / 1e9, 2),
    }
    if baseline:
        row["ratio"] = round(per_s / baseline, 3)
    return row


# ----------------------------------------------------------------------------- inference
def _onnx_runner(model: nn.Module, x: torch.Tensor) -> Callable[[], Any] | None:
    """``optimize(backend="onnxruntime")`` classifying ``x``, or None without onnxruntime."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    return _bind(optimize(model, precision="fp32", backend="onnxruntime"), x)


def inference_variants(model: nn.Module, s: Settings, *, full: bool, compile_: bool) -> dict[str, Callable]:
    """Callables that classify one batch, by label; the baseline is not among them."""
    x = torch.rand(s.batch, s.in_channels, s.image_size, s.image_size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    cl_model = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    variants: dict[str, Callable] = {"channels-last": lambda: cl_model(x_cl)}
    configs = [("fp32", "eager", 16), ("auto", "eager", 16)]
    if full:
        configs += [("fp32", "eager", None), ("auto", "eager", None), ("fp32", "jit", 16), ("auto", "jit", 16)]
    if compile_:
        configs += [("fp32", "compile", 16), ("auto", "compile", 16)]
    for precision, backend, micro in configs:
        net = optimize(model, precision=precision, backend=backend, micro_batch=micro)
        variants[_label(precision, backend, micro, net.precision)] = _bind(net, x)
    return variants


def _label(precision: str, backend: str, micro: int | None, resolved: str) -> str:
    parts = [precision if precision != "auto" else f"auto={resolved}"]
    if backend != "eager":
        parts.append(backend)
    if micro is None:
        parts.append("whole batch")
    return f"optimize({', '.join(parts)})"


def _bind(net: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    return lambda: net(x)


def bench_inference(
    model: nn.Module, s: Settings, *, full: bool, compile_: bool, onnx: bool, latency: bool = True
) -> dict[str, Any]:
    """Throughput at ``s.batch`` of the baseline and every variant, and (optionally) batch-1 latency."""
    model = copy.deepcopy(model).eval()
    flops = count_flops(model, (s.in_channels, s.image_size, s.image_size))
    x = torch.rand(s.batch, s.in_channels, s.image_size, s.image_size)
    timings: dict[str, Timing] = {}
    with torch.no_grad():
        before = measure(lambda: model(x), s.min_run_time)
        variants = inference_variants(model, s, full=full, compile_=compile_)
        if onnx and (runner := _onnx_runner(model, x)) is not None:
            variants[ONNX_LABEL] = runner
        for label, fn in variants.items():
            with _compile_warnings(label):
                timings[label] = measure(fn, s.min_run_time, warmup=3)
        baseline_timing = before.merged(measure(lambda: model(x), s.min_run_time))
        latencies = bench_latency(model, s) if latency else {}
    baseline = rate(baseline_timing, s.batch)
    rows = {BASELINE: _row(baseline_timing, s.batch, flops, baseline)}
    rows.update({label: _row(t, s.batch, flops, baseline) for label, t in timings.items()})
    return {"throughput": rows, "latency_ms": latencies}


@contextlib.contextmanager
def _compile_warnings(label: str) -> Iterator[None]:
    """Let a compile fallback warning through once; silence the rest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "compile" in label:
            warnings.simplefilter("default", RuntimeWarning)
        yield


def bench_latency(model: nn.Module, s: Settings) -> dict[str, float]:
    """Median time of one image (batch 1), in ms, for the baseline and the default optimised models."""
    x = torch.rand(1, s.in_channels, s.image_size, s.image_size)
    nets = {
        BASELINE: model,
        "optimize(fp32)": optimize(model, precision="fp32"),
        "optimize(auto)": optimize(model, precision="auto"),
    }
    run_time = max(s.min_run_time / 3, 0.2)
    with torch.no_grad():
        return {label: round(measure(_bind(net, x), run_time).median_s * 1e3, 3) for label, net in nets.items()}


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainVariant:
    """Training-step settings: memory format, bf16 autocast, how dilated convolutions and BatchNorm are computed.

    ``nchw_wgrad``: dilated, with their weight gradients in NCHW (the guard alone);
    ``space_to_batch``: undilated on space-to-batch sub-grids (the training default on CPUs);
    ``aligned_bn``: BatchNorm on rows aligned to the vector width
    (:class:`lanmsff.training.cpu_kernels.batch_norm.AlignedRowsBatchNorm2d`, the training default on CPUs);
    ``cpu_kernels``: every CPU kernel that ``model.cpu_kernels=auto`` applies
    (:func:`lanmsff.training.cpu_kernels.apply_cpu_kernels`; nothing off the CPU): the training default.
    """

    channels_last: bool
    bf16: bool
    nchw_wgrad: bool = False
    space_to_batch: bool = False
    aligned_bn: bool = False
    cpu_kernels: bool = False

    @property
    def changes_dilated(self) -> bool:
        return self.nchw_wgrad or self.space_to_batch


TRAIN_VARIANTS = {
    BASELINE: TrainVariant(False, False),
    "channels-last fp32": TrainVariant(True, False),
    "NCHW + bf16 autocast": TrainVariant(False, True),
    "channels-last + bf16 autocast": TrainVariant(True, True),
    "channels-last + bf16, dilated wgrad NCHW": TrainVariant(True, True, True),
    "channels-last fp32, dilated as space-to-batch": TrainVariant(True, False, space_to_batch=True),
    "channels-last + bf16, dilated as space-to-batch": TrainVariant(True, True, space_to_batch=True),
    ALIGNED_FP32: TrainVariant(True, False, space_to_batch=True, aligned_bn=True),
    ALIGNED_BF16: TrainVariant(True, True, space_to_batch=True, aligned_bn=True),
    DEFAULT_FP32: TrainVariant(True, False, cpu_kernels=True),
    DEFAULT_BF16: TrainVariant(True, True, cpu_kernels=True),
}


def prepare_training(
    model: nn.Module, variant: TrainVariant, device: torch.device | str = "cpu"
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A training copy of ``model`` on ``device`` in ``variant``'s layout, with the reference Adam (1e-3, eps 1e-7)."""
    model = copy.deepcopy(model).to(device).train()
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if variant.space_to_batch:
        convert_space_to_batch(model)
    elif variant.nchw_wgrad:
        convert_nchw_weight_grads(model)
    if variant.aligned_bn:
        convert_aligned_rows_batch_norm(model)
    if variant.cpu_kernels:
        apply_cpu_kernels(model, "auto", device=device, precision="bf16-mixed" if variant.bf16 else "32-true")
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, variant: TrainVariant, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Forward, cross-entropy, backward and an Adam step on ``x``'s device; returns the loss.

    ``variant.bf16`` autocasts to bf16 on the CPU and to what ``precision=auto`` picks on CUDA (bf16,
    or fp16 on GPUs without bf16).
    """
    if variant.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if x.device.type == "cpu" else autocast_dtype("auto", x.device)
    with torch.autocast(x.device.type, dtype=dtype, enabled=variant.bf16):
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


QUICK_TRAIN_VARIANTS = (
    BASELINE,
    "channels-last fp32",
    DEFAULT_FP32,
    DEFAULT_BF16,
)


def training_variants(model: nn.Module, *, bf16: bool = True, quick: bool = False) -> dict[str, TrainVariant]:
    """The variants that apply to ``model``: those that change dilated convolutions only where there are some,
    the bf16 ones only with ``bf16``, and with ``quick`` only the baseline and the training defaults."""
    return {
        k: v
        for k, v in TRAIN_VARIANTS.items()
        if (bf16 or not v.bf16)
        and (not v.changes_dilated or has_dilated_convs(model))
        and (not v.aligned_bn or has_unaligned_batch_norms(model))
        and (not quick or k in QUICK_TRAIN_VARIANTS)
    }


def bench_training(model: nn.Module, s: Settings, variants: dict[str, TrainVariant]) -> dict[str, dict]:
    """Training-step throughput (forward + backward + Adam) of each variant at ``s.batch``."""
    flops = 3 * count_flops(model, (s.in_channels, s.image_size, s.image_size))  # backward ~ 2x forward
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(s.batch, s.in_channels, s.image_size, s.image_size, generator=generator)
    y = torch.randint(0, s.num_classes, (s.batch,), generator=generator)
    timings = {}
    for label, variant in variants.items():
        net, optimizer = prepare_training(model, variant)
        step = functools.partial(train_step, net, optimizer, variant, x, y)
        timings[label] = measure(step, s.train_run_time, warmup=1 if s.quick else 2)
    baseline = rate(timings[BASELINE], s.batch)
    return {label: _row(t, s.batch, flops, baseline) for label, t in timings.items()}


# ----------------------------------------------------------------------------- numerics
def audit_conv_weight_grads(model: nn.Module, variant: TrainVariant, x: torch.Tensor, y: torch.Tensor) -> dict:
    """:func:`lanmsff.training.cpu_kernels.audit.audit_conv_weight_grads` on ``model`` prepared for ``variant``."""
    net, _ = prepare_training(model, variant)
    return audit_step(net, x, y, bf16=variant.bf16, channels_last=variant.channels_last)


def loss_check(
    model: nn.Module, variant: TrainVariant, images: torch.Tensor, labels: torch.Tensor, *, steps: int, batch: int
) -> dict[str, Any]:
    """Train ``steps`` steps on shuffled ``images``; is the loss finite throughout?"""
    net, optimizer = prepare_training(model, variant)
    generator = torch.Generator().manual_seed(0)
    losses: list[float] = []
    for _ in range(steps):
        index = torch.randint(0, len(images), (batch,), generator=generator)
        losses.append(float(train_step(net, optimizer, variant, images[index], labels[index])))
        if not math.isfinite(losses[-1]):
            break
    finite = all(math.isfinite(v) for v in losses)
    return {
        "steps": len(losses),
        "finite": finite,
        "first_nonfinite_step": None if finite else len(losses) - 1,
        "first_loss": round(losses[0], 4),
        "last_loss": finite_or_str(losses[-1]),
        "max_finite_loss": round(max((v for v in losses if math.isfinite(v)), default=math.nan), 4),
    }


# ----------------------------------------------------------------------------- bf16 accuracy
def train_briefly(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch: int = 32, seed: int = 0
) -> nn.Module:
    """Train ``model`` in channels-last fp32 (numerically safe everywhere) for a few epochs; eval mode after."""
    variant = TrainVariant(True, False)
    net, optimizer = prepare_training(model, variant)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for part in order.split(batch):
            if len(part) > 1:
                train_step(net, optimizer, variant, images[part], labels[part])
    return net.eval()


def bf16_agreement(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None, *, tie: float = 0.01
) -> dict[str, Any]:
    """Top-1 agreement of ``optimize(bf16)`` with ``optimize(fp32)`` on ``images`` (and both accuracies).

    ``top1_agreement_beyond_ties`` counts only the images whose two most probable classes differ by
    more than ``tie`` in fp32 probability (``ties`` of them do not).
    """
    fp32 = optimize(model, precision="fp32")(images)
    bf16 = optimize(model, precision="bf16")(images)
    agree = fp32.argmax(1) == bf16.argmax(1)
    fp32_probs = fp32.softmax(1)
    top2 = fp32_probs.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > tie
    result = {
        "images": len(images),
        "top1_agreement": round(float(agree.float().mean()), 5),
        "top1_agreement_beyond_ties": round(float(agree[decided].float().mean()), 5) if decided.any() else None,
        "ties": int((~decided).sum()),
        "max_abs_prob_diff": round(float((fp32_probs - bf16.softmax(1)).abs().max()), 5),
        "max_abs_logit_diff": round(float((fp32 - bf16).abs().max()), 5),
    }
    if labels is not None:
        result["accuracy_fp32"] = round(float((fp32.argmax(1) == labels).float().mean()), 5)
        result["accuracy_bf16"] = round(float((bf16.argmax(1) == labels).float().mean()), 5)
    return result


# ----------------------------------------------------------------------------- data path
def bench_data_path(images: np.ndarray, s: Settings, *, workers: int, min_images: int = 2048) -> dict[str, Any]:
    """Images/s of the cached in-memory training loader with online augmentation (batch ``s.batch``).

    ``images`` (uint8 faces) are tiled to at least ``min_images`` per epoch; one epoch is one timed call.
    """
    from torch.utils.data import DataLoader

    from lanmsff.data.datamodule import FaceDataset
    from lanmsff.data.transforms import train_transform

    tiled = np.tile(images, (max(1, math.ceil(min_images / len(images))), 1, 1))
    zeros = np.zeros(len(tiled), np.int64)
    dataset = FaceDataset(tiled, zeros, zeros, transform=train_transform(s.image_size))
    loader = DataLoader(dataset, batch_size=s.batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0)

    def epoch() -> None:
        for _ in loader:
            pass

    timing = measure(epoch, s.min_run_time, warmup=1)  # the workers stop when the loader is collected
    return {"num_workers": workers, "images_per_s": round(len(dataset) / timing.median_s, 1)}

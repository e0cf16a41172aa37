"""Fast inference: an optimised copy of a trained network, and loading one from a checkpoint.

:func:`optimize` turns any image classifier of this project (LANMSFF, its ablations, the timm
baselines) into a module for batched NCHW float32 input that returns float32 logits, numerically
equivalent to the original in fp32. It works on a deep copy and applies, in order:

1. **eval mode, no gradients**: dropout off, BatchNorm uses its running statistics, parameters
   stop requiring gradients (nothing is recorded for autograd).
2. **BatchNorm folding** (:func:`fold_batchnorm`): an eval-mode BatchNorm after a convolution is an
   affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``; it is folded into the
   convolution's weight and bias with :func:`torch.nn.utils.fusion.fuse_conv_bn_eval` and replaced
   by ``nn.Identity``. LANMSFF's ``ConvBN`` (plain and depthwise-separable, where BN follows the
   pointwise conv) folds entirely (all 20 BatchNorms); other models fold wherever a ``Conv2d`` is
   directly followed by a ``BatchNorm2d`` in an ``nn.Sequential`` (timm's ``BatchNormAct2d`` too:
   its activation stays), and the rest is left as it is.
3. **channels-last** memory format for weights and activations: oneDNN's direct and brgemm
   convolution kernels work on NHWC without reordering the tensors around every convolution. The
   input is converted inside ``forward``; NCHW contiguous input is fine.
4. **reduced precision** (``precision``): ``bf16`` runs the network under
   ``torch.autocast(dtype=torch.bfloat16)`` (convolutions and matrix products in bf16 with fp32
   accumulation, the rest as autocast decides) except the stem, the first convolution, which reads
   the image and stays fp32 (:class:`Float32Stem`); ``auto`` picks bf16 on CPUs with native bf16
   arithmetic (AVX-512 BF16 or AMX, see :func:`cpu_has_native_bf16`), and on CUDA bf16 where the
   GPU supports it, else fp16. Inputs and outputs stay float32.
5. **backend**: ``eager`` runs the transformed modules as they are; ``jit`` traces them with
   :func:`torch.jit.trace` (under autocast when reduced precision is on) and freezes the trace with
   :func:`torch.jit.freeze`, which inlines the weights as constants, folds what is left of
   BatchNorm, and lets oneDNN fuse convolutions with the following ReLU/add; ``compile`` wraps the
   eager result with :func:`torch.compile` (inductor, ``freezing`` on: prepacked oneDNN weights,
   fused elementwise code); if compilation fails the eager result is used with a warning;
   ``onnxruntime`` exports the folded network to ONNX once and runs it with ONNX Runtime (fp32, CPU).

The traced and compiled forms are specialised to the input's spatial size (the model's image size):
``jit`` traces again for each new input shape (batch sizes share a trace), ``compile`` compiles each
new batch size once (about 15-40 s on 2 cores), so keep the batch size fixed with it.

Accuracy cost of bf16 (measured on this project's 2-core AVX-512 BF16 CPUs): on the checkpoint of the
``make train`` demo, top-1 agreement with fp32 is 99.7% over its 1,400 faces (99.3% of the 140 test
faces) and the softmax probabilities differ by at most 0.019; test accuracy 74.3% fp32, 75.0% bf16.
Keeping the stem in fp32 matters: all in bf16 the agreement was 99.4%. ``python -m lanmsff.bench``
reports it (``bf16_agreement``).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import itertools
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lanmsff.errors import ConfigError, UserError, check_choice

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("eager", "jit", "compile", "onnxruntime")
DEFAULT_MICRO_BATCH = 16
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


# ----------------------------------------------------------------------------- hardware
@functools.cache
def _cpu_flags() -> frozenset[str]:
    """Feature flags of the first CPU in ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


NATIVE_BF16_ENV = "LANMSFF_NATIVE_BF16"


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
    if _cpu_flags():
        return bool(_cpu_flags() & set(_BF16_FLAGS))
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_description() -> dict[str, Any]:
    """The CPU as benchmarks report it: model name, cores usable by this process, capability, bf16."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return {
        "cpu": model or "unknown",
        "cores": cores,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "bf16_flags": sorted(_cpu_flags() & set(_BF16_FLAGS)),
        "native_bf16_override": os.environ.get(NATIVE_BF16_ENV) or None,
    }


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


def tune_glibc_malloc() -> bool:
    """Make glibc reuse freed large blocks instead of unmapping them (process-wide); True if applied.

    glibc serves allocations above its mmap threshold (at most 32 MiB) with ``mmap`` and unmaps
    them on ``free``, so a network whose activations exceed 32 MiB (LANMSFF at batch 64: 69 MB per
    block-1 tensor in fp32) maps fresh zero-filled pages on every forward and backward pass: about
    300,000 page faults per batch, half of the CPU time on a 2-core VM. ``M_MMAP_MAX=0`` serves
    them from the heap and a high ``M_TRIM_THRESHOLD`` keeps the heap from shrinking, so the memory
    is reused (and not returned to the OS before exit). The setting is global and permanent for the
    process; it speeds up plain eager models as much as optimised ones. :func:`optimize` does not
    need it (it runs batches in parts of ``micro_batch`` images, below the threshold).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    except (OSError, AttributeError):
        return False


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    ``auto``: on CUDA bf16 if the GPU supports it, else fp16; on CPU bf16 only with native bf16
    arithmetic (:func:`cpu_has_native_bf16`), else fp32. ``bf16`` always autocasts to bf16 (on a CPU
    without native support oneDNN emulates it, which is slower than fp32).
    """
    check_choice("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu":
            warn_if_bf16_emulated("precision='bf16'")
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


class EmulatedBF16Warning(RuntimeWarning):
    """bf16 was asked for on a CPU that only emulates it (slower than fp32, rounded differently)."""


def warn_if_bf16_emulated(what: str) -> bool:
    """Warn (once per call site) that ``what`` runs emulated bf16 on this CPU; True if it does."""
    if cpu_has_native_bf16():
        return False
    warnings.warn(
        f"{what}: this CPU has no native bf16 (no AVX-512 BF16 or AMX), so bf16 is emulated: slower than "
        "fp32 and rounded differently; use 'auto' (fp32 here) or fp32",
        EmulatedBF16Warning,
        stacklevel=3,
    )
    return True


# ----------------------------------------------------------------------------- BatchNorm folding
def _fusable_bn(module: nn.Module) -> bool:
    """An eval-time BatchNorm2d whose effect is exactly its affine map (plus, for timm, an activation)."""
    if not isinstance(module, nn.BatchNorm2d) or not module.track_running_stats or module.running_mean is None:
        return False
    return type(module) is nn.BatchNorm2d or _is_timm_bn_act(module)


def _is_timm_bn_act(module: nn.Module) -> bool:
    """timm's ``BatchNormAct2d``: BatchNorm, then ``drop`` and ``act`` modules."""
    return type(module).__name__ == "BatchNormAct2d" and all(
        isinstance(getattr(module, name, None), nn.Module) for name in ("drop", "act")
    )


def _bn_replacement(bn: nn.Module) -> nn.Module:
    """What stays of a folded BatchNorm: nothing, or timm's dropout + activation."""
    if _is_timm_bn_act(bn):
        return nn.Sequential(bn.drop, bn.act)
    return nn.Identity()


def _conv_slot(sequence: nn.Sequential, name: str) -> tuple[nn.Module, str] | None:
    """``(parent, attribute)`` of the convolution producing the output of ``sequence[name]``, if any.

    A ``Conv2d`` (or subclass, e.g. the TF-'same' convolutions) produces its own output; LANMSFF's
    ``SeparableConv2d`` ends with its ``pointwise`` convolution.
    """
    from lanmsff.models.blocks import SeparableConv2d

    producer = sequence._modules[name]
    if isinstance(producer, SeparableConv2d):
        return producer, "pointwise"
    if isinstance(producer, nn.Conv2d):
        return sequence, name
    return None


def _fold_pair(parent: nn.Module, conv_name: str, owner: nn.Module, bn_name: str) -> None:
    """Replace ``parent.<conv_name>`` by the folded convolution and ``owner.<bn_name>`` by what remains."""
    bn = owner._modules[bn_name]
    parent._modules[conv_name] = fuse_conv_bn_eval(parent._modules[conv_name], bn)
    owner._modules[bn_name] = _bn_replacement(bn)


def _fold_sequential(model: nn.Module) -> int:
    """Fold BatchNorms that directly follow a convolution inside an ``nn.Sequential``."""
    folded = 0
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequence._modules)
        for before, name in itertools.pairwise(names):
            bn = sequence._modules[name]
            slot = _conv_slot(sequence, before) if _fusable_bn(bn) else None
            if slot is None or slot[0]._modules[slot[1]].out_channels != bn.num_features:
                continue
            _fold_pair(*slot, sequence, name)
            folded += 1
    return folded


class _Tracer(torch.fx.Tracer):
    """torch.fx tracer that keeps timm's ``BatchNormAct2d`` as one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return _is_timm_bn_act(m) or super().is_leaf_module(m, module_qualified_name)


def _traced_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """``(conv, bn)`` module names where, in the traced forward, the BN consumes exactly the conv's output.

    Both modules must be called once, and the conv's output must feed nothing but the BN. Models
    that torch.fx cannot trace (e.g. LANMSFF, whose padding depends on the input shape) give ``[]``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _Tracer().trace(model)
    except Exception:  # any Python construct fx cannot trace: fall back to the Sequential rule only
        return []
    modules = dict(model.named_modules())
    calls = collections.Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not _fusable_bn(modules[node.target]) or len(node.args) != 1:
            continue
        source = node.args[0]
        if (
            isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and isinstance(modules[source.target], nn.Conv2d)
            and len(source.users) == 1
            and calls[source.target] == calls[node.target] == 1
            and modules[source.target].out_channels == modules[node.target].num_features
        ):
            pairs.append((source.target, node.target))
    return pairs


def _split_name(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, attr = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), attr


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorm2d layers into the convolution before them, in place; returns how many.

    Two rules find the pairs. (1) Inside an ``nn.Sequential``, a BatchNorm2d directly after a
    ``Conv2d`` or a LANMSFF ``SeparableConv2d`` (BN then follows its pointwise conv): this covers
    every BatchNorm of LANMSFF. (2) For the rest, the model's forward is traced with torch.fx
    (where it can be: timm's CNNs) and a BatchNorm whose only input is a convolution whose only
    consumer is that BatchNorm is folded (timm's ``conv1``/``bn1`` attributes). Anything else is
    left as it is.

    The folded convolution gets ``w * gamma / sqrt(var + eps)`` and
    ``(b - mean) * gamma / sqrt(var + eps) + beta``; the BatchNorm becomes ``nn.Identity`` (timm's
    ``BatchNormAct2d`` keeps its dropout and activation). ``model`` must be in eval mode.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (BatchNorm must use its running statistics)")
    folded = _fold_sequential(model)
    for conv_name, bn_name in _traced_pairs(model):
        _fold_pair(*_split_name(model, conv_name), *_split_name(model, bn_name))
        folded += 1
    return folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm layers (any dimension) in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# ----------------------------------------------------------------------------- the optimised module
@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the deprecation and tracer warnings of TorchScript (the trace is checked by tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


class Float32Stem(nn.Module):
    """Runs the wrapped layer in fp32 with autocast off (the stem under reduced precision).

    The first convolution reads the image itself; rounding pixels and stem weights to bf16 is the
    largest single source of bf16/fp32 disagreement (on the demo checkpoint it halves the top-1 flips,
    9 -> 4 of 1,400 faces) while the layer costs under 1% of LANMSFF's FLOPs.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.layer(x.float())


def keep_stem_in_fp32(net: nn.Module) -> str | None:
    """Wrap the first ``Conv2d`` of ``net`` (in module order) in :class:`Float32Stem`; returns its name."""
    name = next((n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), None)
    if name is not None:
        parent, attr = _split_name(net, name)
        parent._modules[attr] = Float32Stem(parent._modules[attr])
    return name


def _onnx_session(net: nn.Module) -> Any:
    """An ONNX Runtime session (CPU, torch's thread count) of ``net`` exported in fp32."""
    import tempfile

    from lanmsff.export import export_model_onnx, input_geometry

    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("backend='onnxruntime' needs onnxruntime and onnx: pip install -e '.[export]'") from None
    in_channels, image_size = input_geometry(net)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_model_onnx(net, path, in_channels=in_channels, image_size=image_size)
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OptimizedModel(nn.Module):
    """What :func:`optimize` returns: float32 NCHW images in, float32 logits out.

    Args:
        net: the transformed network (eval mode, BN folded, channels-last).
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` for reduced precision, ``None`` for fp32.
        backend: ``eager``, ``jit``, ``compile`` or ``onnxruntime`` (see :func:`optimize`).
        micro_batch: largest number of images the network sees at once (``None``: the whole batch).
        channels_last: convert 4-d input to channels-last before the network.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        autocast_dtype: torch.dtype | None,
        backend: str,
        micro_batch: int | None = DEFAULT_MICRO_BATCH,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.net = net
        self.autocast_dtype = autocast_dtype
        self.backend = backend
        self.micro_batch = micro_batch
        self.channels_last = channels_last
        # kept out of the module tree (plain containers), so state_dict() is that of ``net`` alone
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}
        self._compiled: list[Any] = []
        if backend == "compile":
            self._compiled.append(torch.compile(net, dynamic=False, options={"freezing": True}))
        self._session = _onnx_session(net) if backend == "onnxruntime" else None

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: what the convolutions compute in."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def _autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.autocast_dtype)

    def _trace(self, x: torch.Tensor) -> torch.jit.ScriptModule:
        """The frozen trace for inputs shaped like ``x`` (any batch size), made on first use."""
        key = (tuple(x.shape[1:]), x.device.type, x.dtype)
        if key not in self._traces:
            with _quiet_tracing(), self._autocast(x.device.type):
                self._traces[key] = torch.jit.freeze(torch.jit.trace(self.net, x, check_trace=False))
        return self._traces[key]

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded with zero images to the next power of two (at most ``micro_batch``).

        The compiled network is specialised to its batch size; padding limits the sizes it ever
        sees to 1, 2, 4, ..., ``micro_batch``. Images do not interact in eval mode, so the padding
        changes nothing for the real ones.
        """
        n = x.shape[0]
        size = 1 << (n - 1).bit_length()
        if self.micro_batch:
            size = min(size, max(self.micro_batch, n))
        if size == n:
            return x
        pad = x.new_zeros((size - n, *x.shape[1:]))
        return torch.cat([x, pad]).contiguous(memory_format=_memory_format(x))

    def _run_compiled(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled network; on a compilation failure, warn once and stay with the eager network."""
        try:
            with self._autocast(x.device.type):
                return self._compiled[0](self._padded(x))[: x.shape[0]]
        except Exception as err:  # torch.compile raises many kinds (backend, C++ toolchain, guards)
            with self._autocast(x.device.type):
                out = self.net(x)  # an error of the input itself is raised here, not swallowed
            warnings.warn(
                f"optimize(backend='compile'): torch.compile failed ({type(err).__name__}: {str(err)[:300]}); "
                "using the eager optimised model instead",
                RuntimeWarning,
                stacklevel=4,
            )
            self._compiled.clear()
            self.backend = "eager"
            return out

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self._session is not None:
            feed = {self._session.get_inputs()[0].name: x.contiguous().numpy()}
            return torch.from_numpy(self._session.run(None, feed)[0])
        if self.backend == "jit":
            return self._trace(x)(x)
        if self.backend == "compile" and self._compiled:
            return self._run_compiled(x)
        with self._autocast(x.device.type):
            return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        split = self.micro_batch is not None and x.shape[0] > self.micro_batch
        with torch.no_grad():
            outputs = [self._run(part) for part in (x.split(self.micro_batch) if split else (x,))]
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return out.float()

    def extra_repr(self) -> str:
        return (
            f"precision={self.precision!r}, backend={self.backend!r}, micro_batch={self.micro_batch}, "
            f"channels_last={self.channels_last}"
        )


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _device_of(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def optimize(
    model: nn.Module,
    *,
    precision: str = "auto",
    backend: str = "eager",
    micro_batch: int | None = DEFAULT_MICRO_BATCH,
) -> OptimizedModel:
    """An inference-ready copy of ``model``: eval mode, BN folded, channels-last, optional bf16.

    Args:
        model: any classifier taking ``(B, C, H, W)`` images; it is deep-copied, never modified.
        precision: ``auto`` (bf16 where the hardware computes it natively, else fp32), ``fp32`` or
            ``bf16`` (autocast; see :func:`resolve_precision`).
        backend: ``eager`` (the transformed modules), ``jit`` (traced and frozen with TorchScript,
            one trace per input shape) or ``compile`` (``torch.compile`` with inductor and freezing;
            one compilation per input shape; falls back to eager with a warning if it fails) or
            ``onnxruntime`` (the folded network exported to ONNX and run by ONNX Runtime on the CPU
            in fp32, whole batches; needs the ``[export]`` extra; ``auto`` precision means fp32 here).
        micro_batch: run larger batches in parts of at most this many images (``None``: never
            split). Results are identical (images are independent in eval mode); see the module
            docstring for why 16 is much faster than whole batches of 64 on CPU.

    Returns:
        An :class:`OptimizedModel` taking float32 NCHW input (any memory format) and returning
        float32 logits; in fp32 they match the original model's within float rounding (about 1e-6).

    Raises:
        ConfigError: an unknown ``precision`` or ``backend``, or a bad ``micro_batch`` (the message
            names the argument; ConfigError is a ValueError).
    """
    check_choice("backend", backend, BACKENDS)
    if micro_batch is not None and (type(micro_batch) is not int or micro_batch < 1):
        raise ConfigError(f"micro_batch={micro_batch!r} must be a positive integer or None")
    autocast_dtype = resolve_precision(precision, _device_of(model))
    if backend == "onnxruntime":
        if precision == "bf16" or _device_of(model).type != "cpu":
            raise ConfigError(
                "backend='onnxruntime' runs fp32 on the CPU: use precision='fp32' or 'auto' and a CPU model"
            )
        autocast_dtype, micro_batch = None, None
    net = copy.deepcopy(model).eval()
    net.requires_grad_(False)
    folded = fold_batchnorm(net)
    net = net.to(memory_format=torch.channels_last)
    if autocast_dtype is not None:
        keep_stem_in_fp32(net)
    log.debug("optimize: folded %d BatchNorm layers, precision=%s, backend=%s", folded, autocast_dtype, backend)
    return OptimizedModel(
        net,
        autocast_dtype=autocast_dtype,
        backend=backend,
        micro_batch=micro_batch,
        channels_last=backend != "onnxruntime",
    )


# ----------------------------------------------------------------------------- sample inputs
def sample_faces(n: int, image_size: int = 64, *, in_channels: int = 1, seed: int = 0) -> torch.Tensor:
    """``n`` synthetic KDEF-style faces as the network sees them: ``(n, C, S, S)`` float32 in [0, 1].

    Faces are drawn by :func:`lanmsff.data.synthetic.render_face` (people, sessions, expressions and
    angles cycled), cropped with the fixed KDEF box, converted to grayscale and resized like the
    training data; for checks and benchmarks that need realistic rather than uniform-noise input.
    """
    import cv2

    from lanmsff.data.faces import face_crop
    from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS, GENDERS, SESSIONS, KDEFName
    from lanmsff.data.synthetic import render_face

    faces = []
    for i in range(n):
        people = (SESSIONS[i % 2], GENDERS[(i // 2) % 2], 1 + (i // 4) % 35)
        name = KDEFName(*people, EXPRESSIONS[i % 7], ANGLES[i % 5])
        gray = cv2.cvtColor(render_face(name, seed), cv2.COLOR_RGB2GRAY)
        face, _ = face_crop(gray, name.angle, "box")
        faces.append(cv2.resize(face, (image_size, image_size), interpolation=cv2.INTER_AREA))
    x = torch.from_numpy(np.stack(faces)).float().div_(255.0).unsqueeze(1)
    return x.expand(-1, in_channels, -1, -1).contiguous()


# ----------------------------------------------------------------------------- checkpoints
class LoadedModel(NamedTuple):
    """A network restored from a checkpoint, with what is needed to feed it."""

    net: nn.Module
    class_names: list[str]
    image_size: int
    config: dict[str, Any] | None  # the training run's resolved config (``None`` if not embedded)


_ALLOWED_TARGETS = ("lanmsff.",)


def _check_net_config(net_cfg: Any, path: Path) -> None:
    """Refuse network configs that would instantiate anything outside this package.

    ``weights_only=True`` keeps pickled code out, but the network is built from the config stored in
    the checkpoint: its ``_target_`` must name a lanmsff builder, so a crafted file cannot run
    arbitrary callables.
    """
    target = net_cfg.get("_target_") if isinstance(net_cfg, dict) else None
    if not isinstance(target, str) or not target.startswith(_ALLOWED_TARGETS):
        raise UserError(f"ckpt_path={path}: the stored network config has _target_={target!r}, not a lanmsff model")


def load_model(ckpt_path: str | Path) -> LoadedModel:
    """The eval-mode backbone of a FERModule checkpoint, its class names and input size.

    The file is read with ``torch.load(weights_only=True)`` and validated by
    :func:`lanmsff.training.task.load_checkpoint`; the network is rebuilt from the config stored in
    the checkpoint's hyper-parameters and gets the checkpoint's weights.

    Returns:
        ``LoadedModel(net, class_names, image_size, config)``; unpack the first three as
        ``net, class_names, image_size, _ = load_model(path)``.

    Raises:
        UserError: a missing file, a file that is not a lanmsff checkpoint, or weights that do not fit.
    """
    from lanmsff.training.callbacks import CHECKPOINT_KEY
    from lanmsff.training.module import FERModule
    from lanmsff.training.task import load_checkpoint

    path = Path(ckpt_path).expanduser()
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or "net" not in hparams or "class_names" not in hparams:
        raise UserError(f"ckpt_path={path}: the checkpoint has no network description (hyper_parameters.net)")
    _check_net_config(hparams["net"], path)
    try:
        module = FERModule(**hparams)
    except TypeError as err:
        raise UserError(f"ckpt_path={path}: unexpected hyper-parameters for FERModule ({err})") from None
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as err:
        raise UserError(f"ckpt_path={path}: the weights do not fit the stored network ({err})") from None
    net = module.net.eval()
    embedded = checkpoint.get(CHECKPOINT_KEY)
    config = embedded.get("config") if isinstance(embedded, dict) else None
    return LoadedModel(net, list(hparams["class_names"]), int(hparams.get("image_size", 64)), config)

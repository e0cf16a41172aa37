"""Fast inference: an optimised copy of a trained network (:func:`optimize`).

:func:`optimize` turns any image classifier of this project (LANMSFF, its ablations, the timm
baselines) into a module for batched NCHW float32 input that returns float32 logits, numerically
equivalent to the original in fp32. It works on a deep copy and applies, in order:

1. **eval mode, no gradients**: dropout off, BatchNorm uses its running statistics, parameters
   stop requiring gradients (nothing is recorded for autograd).
2. **BatchNorm folding** (:mod:`lanmsff.inference.folding`): every eval-mode BatchNorm that follows
   a convolution is folded into it (all of LANMSFF's; the pairs timm's CNNs have in ``Sequential``
   blocks or that torch.fx finds), and the rest is left as it is.
3. **channels-last** memory format for weights and activations: oneDNN's direct and brgemm
   convolution kernels work on NHWC without reordering the tensors around every convolution. The
   input is converted inside ``forward``; NCHW contiguous input is fine.
4. **reduced precision** (``precision``): ``bf16`` runs the network under
   ``torch.autocast(dtype=torch.bfloat16)`` (convolutions and matrix products in bf16 with fp32
   accumulation, the rest as autocast decides) except the stem, the first convolution, which reads
   the image and stays fp32 (:class:`Float32Stem`); ``auto`` picks bf16 on CPUs with native bf16
   arithmetic (AVX-512 BF16 or AMX, :func:`lanmsff.runtime.hardware.cpu_has_native_bf16`), and on
   CUDA bf16 where the GPU supports it, else fp16. Inputs and outputs stay float32.
5. **backend**: ``eager`` runs the transformed modules as they are; ``jit`` traces them with
   :func:`torch.jit.trace` (under autocast when reduced precision is on) and freezes the trace with
   :func:`torch.jit.freeze`, which inlines the weights as constants, folds what is left of
   BatchNorm, and lets oneDNN fuse convolutions with the following ReLU/add; ``compile`` wraps the
   eager result with :func:`torch.compile` (inductor, ``freezing`` on: prepacked oneDNN weights,
   fused elementwise code); if compilation fails the eager result is used with a warning;
   ``onnxruntime`` exports the folded network to ONNX once and runs it with ONNX Runtime (fp32, CPU).

The traced and compiled forms are specialised to the input's spatial size (the model's image size):
``jit`` traces again for each new input shape (batch sizes share a trace), ``compile`` compiles each
new batch size once (tens of seconds on a small CPU), so keep the batch size fixed with it.

The accuracy cost of bf16 (top-1 agreement with fp32 on the demo checkpoint) is measured by
the benchmark suite (``make bench``, ``bf16_agreement``) and reported in the docs' speed results.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from lanmsff.errors import ConfigError, check_choice
from lanmsff.inference.folding import fold_batchnorm, split_name
from lanmsff.onnx_export import onnxruntime_session
from lanmsff.runtime.hardware import compile_module
from lanmsff.runtime.precision import autocast_dtype as autocast_dtype_for

log = logging.getLogger(__name__)

BACKENDS = ("eager", "jit", "compile", "onnxruntime")
DEFAULT_MICRO_BATCH = 16


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
    largest single source of bf16/fp32 disagreement (measured by the benchmark suite; docs/speed-results.md), while the
    layer costs under 1% of LANMSFF's FLOPs.
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
        parent, attr = split_name(net, name)
        parent._modules[attr] = Float32Stem(parent._modules[attr])
    return name


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
            self._compiled.append(compile_module(net, dynamic=False, options={"freezing": True}))
        self._session = onnxruntime_session(net) if backend == "onnxruntime" else None

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
            ``bf16`` (autocast; see :func:`lanmsff.runtime.precision.autocast_dtype`).
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
    autocast_dtype = autocast_dtype_for(precision, _device_of(model))
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

"""Two element-wise training kernels for CPUs: dropout masks drawn as integers, and LANMSFF's pooled PWFS in
one pass each way.

* :class:`MaskDropout` draws its mask as uniform 31-bit integers compared with ``p * 2^31`` instead of
  ``bernoulli_``: the same distribution (each unit dropped independently with probability ``p``, to
  within 2^-32), from the same generator, but a different sequence of draws, so a seed gives another
  (equally valid) run than ``nn.Dropout``.
* :class:`FusedPWFSSelection` computes a ``pwfs`` feature selection's spatial average
  (``pwfs(x).mean(dim=(2, 3))``, what LANMSFF fuses from blocks 1-3) as one autograd function: the
  same value within float rounding and the same gradient, except that on a tie the minimum's zero
  share goes to one of the tied values instead of being split.

Both change no parameter, buffer or state-dict key; outside training (and under tracing, export and
``torch.compile``, which see the composed operations) they compute exactly what the plain modules do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lanmsff.models.blocks import FeatureSelection, pwfs
from lanmsff.models.introspection import retype_modules


def runs_fused(x: torch.Tensor) -> bool:
    """Whether a fused training function (an ``autograd.Function`` of this package) computes on ``x``: ``x``
    needs a gradient, and no tracer, ONNX exporter or ``torch.compile`` is looking."""
    traced = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
    return x.requires_grad and torch.is_grad_enabled() and not traced


# ----------------------------------------------------------------------------- dropout
class MaskDropout(nn.Dropout):
    """``nn.Dropout`` (inverted dropout) with its mask drawn as uniform 31-bit integers, in the input's memory
    format. On a CPU, where torch draws random numbers on one thread, this is faster than ``bernoulli_``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0:
            return torch.zeros_like(x)
        keep = torch.empty_like(x, dtype=torch.int32).random_() >= round(self.p * 2**31)  # [0, 2^31) each
        return (x * keep).mul_(1.0 / (1.0 - self.p))


def convert_mask_dropout(model: nn.Module) -> int:
    """Make each plain ``nn.Dropout`` of ``model`` a :class:`MaskDropout` in place; returns how many."""
    return retype_modules(model, lambda module: type(module) is nn.Dropout, MaskDropout)


# ----------------------------------------------------------------------------- pooled PWFS
class _PooledPWFS(torch.autograd.Function):
    """``pwfs(x).mean(dim=(2, 3))`` in one pass over ``x`` each way.

    Forward: the groups' spatial sums (fp32 accumulation for bf16/fp16) minus the spatial sum of
    their element-wise minimum, whose group index (0-2, the first on ties) is saved as ``uint8``.
    Backward: every element gets ``grad / (2 H W)`` except the minimum of its three, which gets 0.
    Both run in the ``(B, H, W, C)`` view, so a channels-last input is read and its gradient written
    contiguously.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        _, channels, h, w = x.shape
        acc = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
        nhwc = x.permute(0, 2, 3, 1)
        a, b, c = nhwc.unflatten(3, (3, channels // 3)).unbind(3)
        low = torch.minimum(a, b)
        index = (b < a).to(torch.uint8)
        later = c < low
        low = torch.where(later, c, low)
        index.masked_fill_(later, 2)
        ctx.save_for_backward(index)
        ctx.input_dtype = x.dtype
        total = nhwc.sum(dim=(1, 2), dtype=acc).unflatten(1, (3, channels // 3)).sum(1)
        return ((total - low.sum(dim=(1, 2), dtype=acc)) * (0.5 / (h * w))).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        batch, h, w, k = index.shape
        groups = torch.arange(3, dtype=torch.uint8, device=index.device).view(3, 1)
        keep = (index.unsqueeze(3) != groups).reshape(batch, h, w, 3 * k)
        share = (grad * (0.5 / (h * w))).to(ctx.input_dtype).repeat(1, 3).view(batch, 1, 1, 3 * k)
        return (keep * share).permute(0, 3, 1, 2)


def pooled_pwfs(x: torch.Tensor) -> torch.Tensor:
    """``pwfs(x).mean(dim=(2, 3))``, shape ``(B, C / 3)``: fused (:class:`_PooledPWFS`) when :func:`runs_fused`,
    otherwise the composed operations."""
    if runs_fused(x):
        return _PooledPWFS.apply(x)
    return pwfs(x).mean(dim=(2, 3))


class FusedPWFSSelection(FeatureSelection):
    """A :class:`~lanmsff.models.blocks.FeatureSelection` whose ``pwfs`` spatial average trains fused."""

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return pooled_pwfs(x) if self.mode == "pwfs" else super().pooled(x)


def convert_fused_pwfs(model: nn.Module) -> int:
    """Make each plain ``pwfs`` :class:`FeatureSelection` of ``model`` a :class:`FusedPWFSSelection` in place;
    returns how many."""
    return retype_modules(
        model, lambda module: type(module) is FeatureSelection and module.mode == "pwfs", FusedPWFSSelection
    )

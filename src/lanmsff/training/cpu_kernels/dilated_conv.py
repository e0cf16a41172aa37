"""Dilated convolutions on CPUs: computed exactly as undilated ones, and a guard for what cannot be.

Two problems of oneDNN (as shipped with torch 2.14.1) with *dilated* convolutions on CPUs, both in
LANMSFF's L path (dilation 2):

* **Wrong bf16 weight gradients** in channels-last (NaN, inf or large relative errors at 32x32 and
  larger; the benchmark suite audits every convolution's weight gradient against float64, and the
  docs' speed page gives the measured errors). This made plain ``bf16-mixed`` training diverge to
  NaN in its first epoch.
* **Slow kernels**: a dilated depthwise 3x3 convolution's backward pass takes several times the time
  of the undilated one on the same data, in bf16 and fp32.

:class:`SpaceToBatchConv2d` avoids both. A stride-1 convolution with dilation ``d`` and padding ``p``
(``p`` divisible by ``d``) on an ``H x W`` map (divisible by ``d``) is, on each of the ``d x d``
sub-grids ``x[..., i::d, j::d]``, the *undilated* convolution with padding ``p / d``; its output is
the matching sub-grid of the full output. So the sub-grids are stacked along the batch axis
(space-to-batch, as TensorFlow computes dilated convolutions), convolved once without dilation,
and put back: the same products and weights, only a different summation order (equal to the dilated
convolution within float rounding, in both directions of autograd). It is used where it is faster
(see :meth:`SpaceToBatchConv2d.uses_space_to_batch`).

Where a shape does not allow it (odd map sizes, strides), :class:`NCHWWeightGradConv2d` keeps the
convolution dilated and, under CPU autocast, computes only its weight gradient in NCHW layout, where
the kernel is right. Neither class changes a parameter, buffer or state-dict key, and both are plain
``Conv2d`` off the CPU. :func:`lanmsff.training.cpu_kernels.apply_cpu_kernels` applies them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lanmsff.models.introspection import retype_modules
from lanmsff.runtime.hardware import cpu_runs_avx512


class NCHWWeightGradConv2d(nn.Conv2d):
    """A Conv2d whose weight gradient under CPU autocast is computed in NCHW layout (forward unchanged)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu") or self.padding_mode != "zeros":
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu")
        with torch.autocast("cpu", enabled=False):
            bias = self.bias.to(dtype) if self.bias is not None else None
            return _NCHWWeightGradConv.apply(x.to(dtype), self.weight.to(dtype), bias, self)


class _NCHWWeightGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d):
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.has_bias = conv, bias is not None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        conv = ctx.conv
        common = (conv.stride, conv.padding, conv.dilation, False, [0, 0], conv.groups)
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        grad_x, _, grad_b = torch.ops.aten.convolution_backward(
            grad, x, weight, bias_sizes, *common, [ctx.needs_input_grad[0], False, ctx.has_bias]
        )
        grad_w = None
        if ctx.needs_input_grad[1]:
            nchw = torch.contiguous_format
            grad_w = torch.ops.aten.convolution_backward(
                grad.contiguous(memory_format=nchw),
                x.contiguous(memory_format=nchw),
                weight.clone(memory_format=nchw),
                None,
                *common,
                [False, True, False],
            )[1].contiguous(memory_format=_format_of(weight))
        return grad_x, grad_w, grad_b, None


def _format_of(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def is_dilated_conv(module: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` with dilation: what the converters of this module take."""
    return type(module) is nn.Conv2d and module.dilation != (1, 1)


def convert_nchw_weight_grads(model: nn.Module) -> int:
    """Turn every dilated ``nn.Conv2d`` of ``model`` into :class:`NCHWWeightGradConv2d` in place; returns how many."""
    return retype_modules(model, is_dilated_conv, NCHWWeightGradConv2d)


# ----------------------------------------------------------------------------- space-to-batch
def space_to_batch(x: torch.Tensor, dilation: tuple[int, int]) -> torch.Tensor:
    """``(B, C, H, W)`` to ``(dh * dw * B, C, H / dh, W / dw)``; sub-grid ``(i, j)`` of image ``b`` is at
    index ``(i * dw + j) * B + b``. Keeps channels-last input channels-last (and anything else NCHW).
    """
    dh, dw = dilation
    b, c, h, w = x.shape
    if _format_of(x) is torch.channels_last:
        grids = x.permute(0, 2, 3, 1).reshape(b, h // dh, dh, w // dw, dw, c).permute(2, 4, 0, 1, 3, 5)
        return grids.reshape(dh * dw * b, h // dh, w // dw, c).permute(0, 3, 1, 2)
    grids = x.reshape(b, c, h // dh, dh, w // dw, dw).permute(3, 5, 0, 1, 2, 4)
    return grids.reshape(dh * dw * b, c, h // dh, w // dw)


def batch_to_space(y: torch.Tensor, dilation: tuple[int, int], batch: int) -> torch.Tensor:
    """The inverse of :func:`space_to_batch`: ``(dh * dw * B, C, h, w)`` to ``(B, C, h * dh, w * dw)``."""
    dh, dw = dilation
    _, c, h, w = y.shape
    if _format_of(y) is torch.channels_last:
        image = y.permute(0, 2, 3, 1).reshape(dh, dw, batch, h, w, c).permute(2, 3, 0, 4, 1, 5)
        return image.reshape(batch, h * dh, w * dw, c).permute(0, 3, 1, 2)
    image = y.reshape(dh, dw, batch, c, h, w).permute(2, 3, 4, 0, 5, 1)
    return image.reshape(batch, c, h * dh, w * dw)


def fits_space_to_batch(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether ``conv`` on ``x`` equals the undilated convolution of ``x``'s sub-grids (see the module docstring)."""
    if conv.stride != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str) or x.dim() != 4:
        return False
    return all(
        p % d == 0 and size % d == 0 for p, d, size in zip(conv.padding, conv.dilation, x.shape[-2:], strict=True)
    )


def conv2d_space_to_batch(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a dilated ``conv``, computed as one undilated convolution of ``x``'s sub-grids.

    Needs :func:`fits_space_to_batch`; equal to the dilated convolution within float rounding.
    """
    padding = tuple(p // d for p, d in zip(conv.padding, conv.dilation, strict=True))
    grids = space_to_batch(x, conv.dilation)
    y = F.conv2d(grids, conv.weight, conv.bias, 1, padding, 1, conv.groups)
    return batch_to_space(y, conv.dilation, x.shape[0])


class SpaceToBatchConv2d(NCHWWeightGradConv2d):
    """A dilated Conv2d that a CPU computes as undilated on space-to-batch sub-grids where that is faster.

    Which convolutions gain was measured by the benchmark suite (docs, speed page): under bf16 autocast
    all of LANMSFF's dilated convolutions, so no dilated bf16 kernel runs; in fp32 the depthwise ones;
    and on CPUs without AVX-512 kernels, where oneDNN computes a plain dilated convolution's fp32
    weight gradient by im2col and GEMM, every fitting one. Anything else, and every shape
    :func:`fits_space_to_batch` rejects, is :class:`NCHWWeightGradConv2d`.
    """

    def uses_space_to_batch(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` computes ``x`` on sub-grids: on a CPU, for a fitting shape, under bf16
        autocast, for a depthwise convolution, or on a CPU without AVX-512 kernels (see the class)."""
        if x.device.type != "cpu" or not fits_space_to_batch(self, x):
            return False
        return torch.is_autocast_enabled("cpu") or self.groups == self.in_channels or not cpu_runs_avx512()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_space_to_batch(self, x) if self.uses_space_to_batch(x) else super().forward(x)


def convert_space_to_batch(model: nn.Module) -> int:
    """Turn every dilated ``nn.Conv2d`` of ``model`` into :class:`SpaceToBatchConv2d` in place; returns how many."""
    return retype_modules(model, is_dilated_conv, SpaceToBatchConv2d)

"""A guard against a CPU kernel bug: dilated convolutions' bf16 weight gradients computed in NCHW.

On the bf16-capable CPUs we measured (oneDNN as shipped with torch 2.14.1), the backward-weights
kernel of *dilated* convolutions in channels-last bf16 returns wrong gradients (NaN, inf or large
relative errors at 32x32 and larger; ``python -m lanmsff.bench`` audits every convolution's weight
gradient against float64, and the README's speed section gives the measured errors). LANMSFF's L path
(dilation 2) hits it, which made plain ``bf16-mixed`` training diverge to NaN in its first epoch.

:class:`NCHWWeightGradConv2d` keeps such convolutions in bf16 channels-last for the forward pass and
the input gradient and computes only their weight gradient in NCHW layout, where the kernel is
right. It changes no parameter, buffer or state-dict key, and outside CPU autocast it is a plain
``Conv2d``. ``FERModule`` applies it (:func:`use_nchw_weight_grads`) when it trains in bf16 on a CPU.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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
    """A plain ``nn.Conv2d`` with dilation: what :func:`use_nchw_weight_grads` converts."""
    return type(module) is nn.Conv2d and module.dilation != (1, 1)


def use_nchw_weight_grads(model: nn.Module) -> int:
    """Turn every dilated ``nn.Conv2d`` of ``model`` into :class:`NCHWWeightGradConv2d` in place; returns how many."""
    converted = 0
    for module in model.modules():
        if is_dilated_conv(module):
            module.__class__ = NCHWWeightGradConv2d
            converted += 1
    return converted

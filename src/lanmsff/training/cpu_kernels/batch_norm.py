"""BatchNorm for channels-last training on CPUs, computed on rows aligned to the vector width.

A channels-last batch ``(B, C, H, W)`` is a ``(B * H * W, C)`` matrix in memory. Torch's CPU
BatchNorm kernels walk it row by row, and when ``C`` is not a multiple of the vector width each row
ends in a partial vector. LANMSFF's channel counts (66, 36, 72, 78, 42, 84) all leave one, which makes
its BatchNorms markedly slower than ones of a multiple of the vector width (docs, speed page).

:class:`AlignedRowsBatchNorm2d` reads the same memory as a ``(B * H * W / k, k * C)`` matrix, with
``k`` the smallest number of pixels whose ``k * C`` values fill whole vectors (:func:`aligned_rows`).
Its columns are ``k`` interleaved copies of the channels, so torch's kernels can compute, at full
vector width and without a copy:

* forward: each column's mean and variance (``torch.batch_norm_update_stats``), merged per channel
  (equal-sized groups: the mean of the means, and the mean of the variances plus the variance of the
  means), then the normalisation itself as an eval-mode ``F.batch_norm`` with those statistics;
* backward: each column's ``sum(grad)`` and ``sum(grad * x_hat)`` (``native_batch_norm_backward``
  with the channel's mean and inverse std), summed per channel into the weight and bias gradients;
  the input gradient, ``scale * grad + slope * x + offset`` per channel, as an eval-mode
  ``F.batch_norm`` of ``x`` (``slope * x + offset``, computed in fp32) plus ``scale * grad``.

The function is BatchNorm's (training statistics, the same running-statistics update, unbiased
running variance); in float64 it agrees with ``nn.BatchNorm2d`` to rounding. One rounding differs
in bf16: ``scale`` multiplies the bf16 gradient as a bf16 number (a relative 2^-9 per channel, the
rounding autocast already applies to every convolution weight). On small maps the extra small
operations cost more than they save, so below :attr:`AlignedRowsBatchNorm2d.min_elements` it is
torch's BatchNorm (the docs' speed page has the measurements).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from lanmsff.models.introspection import retype_modules
from lanmsff.training.cpu_kernels.elementwise import runs_fused

ROW_ALIGNMENT = 32  # values: a whole number of vectors for bf16 and fp32 on AVX2 and AVX-512
DTYPES = (torch.float32, torch.bfloat16, torch.float64)  # of the input
PARAM_DTYPES = (torch.float32, torch.float64)  # statistics kept at least in fp32, as torch's kernels keep them


def is_plain_batch_norm(module: nn.Module) -> bool:
    """A plain ``nn.BatchNorm2d`` (not a subclass): what :func:`convert_aligned_rows_batch_norm` converts."""
    return type(module) is nn.BatchNorm2d


def aligned_rows(channels: int) -> int:
    """The smallest ``k`` for which ``k * channels`` is a multiple of :data:`ROW_ALIGNMENT` (1 if it is)."""
    return ROW_ALIGNMENT // math.gcd(channels, ROW_ALIGNMENT)


def _rows(t: torch.Tensor, k: int) -> torch.Tensor:
    """A channels-last ``(B, C, H, W)`` tensor as its ``(B * H * W / k, k * C)`` matrix (a view)."""
    return t.permute(0, 2, 3, 1).reshape(-1, k * t.shape[1])


def _image(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_rows`: a ``(B, C, H, W)`` channels-last view shaped like ``like``."""
    b, c, h, w = like.shape
    return rows.view(b, h, w, c).permute(0, 3, 1, 2)


class _AlignedRowsBatchNorm(torch.autograd.Function):
    """Training-mode ``F.batch_norm`` of a channels-last ``x`` on aligned rows (the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d, k: int):
        channels, count = x.shape[1], x.numel() // x.shape[1]
        width = k * channels
        # float (or float64) scratch statistics make the column statistics float for a bf16 input
        mean_k, var_k = torch.batch_norm_update_stats(_rows(x, k), weight.new_zeros(width), weight.new_ones(width), 0.0)
        mean_k, var_k = mean_k.view(k, channels), var_k.view(k, channels)
        mean = mean_k.mean(0)
        var = var_k.mean(0) + (mean_k - mean).square().mean(0)  # biased, over the k equal groups
        with torch.no_grad():
            bn.running_mean.lerp_(mean, bn.momentum)
            bn.running_var.lerp_(var * (count / (count - 1)), bn.momentum)
        invstd = (var + bn.eps).rsqrt()
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.k = k
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, bn.eps)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor):
        x, weight, mean, invstd = ctx.saved_tensors
        k, channels, count = ctx.k, x.shape[1], x.numel() // x.shape[1]
        grad = grad.contiguous(memory_format=torch.channels_last)
        _, grad_weight_k, grad_bias_k = torch.ops.aten.native_batch_norm_backward(
            _rows(grad, k), _rows(x, k), None, None, None, mean.repeat(k), invstd.repeat(k), True, 0.0,
            [False, True, True],
        )  # fmt: skip
        grad_weight = grad_weight_k.view(k, channels).sum(0).to(weight.dtype)
        grad_bias = grad_bias_k.view(k, channels).sum(0).to(weight.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            scale = weight * invstd
            slope = -scale * invstd * grad_weight / count
            offset = scale * (mean * invstd * grad_weight - grad_bias) / count
            # slope * x + offset, in fp32 inside torch's kernel (mean 0, variance 1, eps 0)
            affine = F.batch_norm(x, torch.zeros_like(mean), torch.ones_like(mean), slope, offset, False, 0.0, 0.0)
            rows = torch.addcmul(_rows(affine, k), _rows(grad, k), scale.to(x.dtype).repeat(k))
            grad_x = _image(rows, x)
        return grad_x, grad_weight, grad_bias, None, None


class AlignedRowsBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that a CPU trains on aligned rows where that is faster (see the module docstring).

    Used by :meth:`forward` when :meth:`uses_aligned_rows` holds; otherwise, in evaluation, off the
    CPU, in NCHW, under tracing, export or ``torch.compile``, it is ``nn.BatchNorm2d``. Parameters,
    buffers and state-dict keys are BatchNorm2d's, and in evaluation it is one (it folds like one).
    """

    min_elements = 2**19  # smaller batches (LANMSFF's 8x8 maps at batch 64) measured faster in torch's kernel

    def uses_aligned_rows(self, x: torch.Tensor) -> bool:
        """Training with running statistics, a fixed momentum and fp32 (or float64) parameters, a
        channels-last CPU tensor of at least :attr:`min_elements` that needs a gradient, whose channels
        do not fill whole vectors."""
        if not (self.training and self.track_running_stats and self.affine and self.momentum is not None):
            return False
        if self.weight.dtype not in PARAM_DTYPES:  # e.g. bf16-true training: torch's kernel
            return False
        if x.device.type != "cpu" or x.dim() != 4 or x.dtype not in DTYPES or x.numel() < self.min_elements:
            return False
        k = aligned_rows(x.shape[1])
        pixels = x.numel() // x.shape[1]
        return k > 1 and pixels % k == 0 and x.is_contiguous(memory_format=torch.channels_last) and runs_fused(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_aligned_rows(x):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        with torch.autocast("cpu", enabled=False):
            return _AlignedRowsBatchNorm.apply(x, self.weight, self.bias, self, aligned_rows(x.shape[1]))


def convert_aligned_rows_batch_norm(model: nn.Module) -> int:
    """Make each plain ``nn.BatchNorm2d`` of ``model`` an :class:`AlignedRowsBatchNorm2d` in place; returns how many."""
    return retype_modules(model, is_plain_batch_norm, AlignedRowsBatchNorm2d)

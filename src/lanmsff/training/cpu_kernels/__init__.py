"""CPU training kernels: faster ways for a CPU to compute the same training step, as one explicit policy.

The networks of :mod:`lanmsff.models` are plain PyTorch (``nn.Conv2d`` with ``dilation=2``,
``nn.BatchNorm2d``, ``nn.Dropout``, PWFS by its definition). The config key ``model.cpu_kernels``
decides whether training on a CPU computes some of their modules differently:

``auto`` (default)
    When training starts on a CPU, :func:`apply_cpu_kernels` gives these modules a subclass that
    computes the same function faster; when training ends, :func:`remove_cpu_kernels` gives them
    their plain class back. No parameter, buffer or state-dict key changes.

    ==========================  =================================  ==========================================
    plain module                CPU kernel                         what it does
    ==========================  =================================  ==========================================
    dilated ``nn.Conv2d``       :class:`SpaceToBatchConv2d`        undilated convolution of the dilated one's
                                                                   sub-grids (and right bf16 weight gradients)
    ``nn.BatchNorm2d``          :class:`AlignedRowsBatchNorm2d`    statistics on rows that fill whole vectors
    ``nn.Dropout``              :class:`MaskDropout`               mask drawn as integers (another sequence
                                                                   of draws: a seed gives another valid run)
    ``pwfs`` selection          :class:`FusedPWFSSelection`        pooled PWFS in one pass each way
    ==========================  =================================  ==========================================

``off``
    The plain modules, also on a CPU (a training step is the plain eager module's, bit for bit in
    fp32), with one exception that is a correctness guard, not a speed kernel: under bf16 on a CPU,
    oneDNN's weight gradients of dilated channels-last convolutions are wrong (NaN), so there the
    dilated convolutions compute their weight gradient in NCHW (:class:`NCHWWeightGradConv2d`).

Off the CPU both settings train the plain modules. The measured effect of each kernel is on the docs'
speed page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from lanmsff.errors import check_choice
from lanmsff.models.blocks import FeatureSelection
from lanmsff.training.cpu_kernels.batch_norm import AlignedRowsBatchNorm2d, convert_aligned_rows_batch_norm
from lanmsff.training.cpu_kernels.dilated_conv import (
    NCHWWeightGradConv2d,
    SpaceToBatchConv2d,
    convert_nchw_weight_grads,
    convert_space_to_batch,
)
from lanmsff.training.cpu_kernels.elementwise import (
    FusedPWFSSelection,
    MaskDropout,
    convert_fused_pwfs,
    convert_mask_dropout,
)

__all__ = [
    "POLICIES",
    "AlignedRowsBatchNorm2d",
    "FusedPWFSSelection",
    "MaskDropout",
    "NCHWWeightGradConv2d",
    "SpaceToBatchConv2d",
    "apply_cpu_kernels",
    "remove_cpu_kernels",
]

log = logging.getLogger(__name__)

POLICIES = ("auto", "off")

# what ``auto`` applies on a CPU: {name in provenance: its in-place converter}
KERNELS: dict[str, Callable[[nn.Module], int]] = {
    "space_to_batch_conv": convert_space_to_batch,
    "aligned_rows_batch_norm": convert_aligned_rows_batch_norm,
    "mask_dropout": convert_mask_dropout,
    "fused_pwfs": convert_fused_pwfs,
}
PLAIN_CLASS: dict[type[nn.Module], type[nn.Module]] = {
    SpaceToBatchConv2d: nn.Conv2d,
    NCHWWeightGradConv2d: nn.Conv2d,
    AlignedRowsBatchNorm2d: nn.BatchNorm2d,
    MaskDropout: nn.Dropout,
    FusedPWFSSelection: FeatureSelection,
}


def apply_cpu_kernels(net: nn.Module, policy: str, *, device: torch.device | str, precision: str) -> dict[str, int]:
    """Give ``net``'s modules the CPU kernels that ``policy`` asks for, in place, for training on ``device`` in
    Lightning ``precision`` (e.g. ``"bf16-mixed"``); returns ``{kernel: number of modules}`` (empty off the CPU).

    Raises:
        ConfigError: ``policy`` is not one of :data:`POLICIES`.
    """
    check_choice("model.cpu_kernels", policy, POLICIES)
    if torch.device(device).type != "cpu":
        return {}
    if policy == "auto":
        return {name: convert(net) for name, convert in KERNELS.items()}
    if "bf16" not in str(precision):
        return {}
    if guarded := convert_nchw_weight_grads(net):
        log.info(
            "model.cpu_kernels=off with bf16 on a CPU: %d dilated convolutions compute their weight gradient in "
            "NCHW (oneDNN's bf16 weight gradients of dilated channels-last convolutions are wrong)",
            guarded,
        )
    return {"nchw_weight_grad_conv": guarded}


def remove_cpu_kernels(net: nn.Module) -> int:
    """Give every module of ``net`` that has a CPU kernel class its plain class back, in place; returns how many."""
    kernel_modules = [module for module in net.modules() if type(module) in PLAIN_CLASS]
    for module in kernel_modules:
        module.__class__ = PLAIN_CLASS[type(module)]
    return len(kernel_modules)

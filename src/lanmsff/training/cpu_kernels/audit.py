"""The weight-gradient audit: every convolution's weight gradient of one training step against float64.

It recomputes each convolution's weight gradient in float64 from the very input and output gradient the
step used, so only the weight-gradient kernel is judged. It is how oneDNN's wrong bf16 weight gradients
of dilated channels-last convolutions were found (NaN, inf or huge relative errors at 32x32 and larger),
and the tests run it on every training path of this package.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lanmsff.training.cpu_kernels.dilated_conv import NCHWWeightGradConv2d

BAD_GRADIENT = 0.05  # relative error of a bf16 weight gradient that is certainly a wrong kernel, not rounding


class _ConvCapture:
    """Inputs and output gradients of every convolution during one training step."""

    def __init__(self, model: nn.Module) -> None:
        self.inputs: dict[str, list[torch.Tensor]] = {}
        self.grads: dict[str, list[torch.Tensor]] = {}
        self.active = True
        self.handles = [
            m.register_forward_hook(self._hook(name))
            for name, m in model.named_modules()
            if isinstance(m, nn.modules.conv._ConvNd)
        ]

    def _hook(self, name: str) -> Callable:
        def hook(_module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not self.active or not output.requires_grad:
                return
            self.inputs.setdefault(name, []).append(inputs[0].detach())
            output.register_hook(lambda g: self.grads.setdefault(name, []).append(g.detach()))

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _reference_weight_grad(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """The weight gradient of ``module`` at input ``x`` and output gradient ``grad``, in float64."""
    params = {name: p.detach().double().requires_grad_(name == "weight") for name, p in module.named_parameters()}
    x = x.double().contiguous()
    with torch.autocast("cpu", enabled=False), torch.enable_grad():
        if isinstance(module, NCHWWeightGradConv2d):  # the dilated convolution itself, not the path under audit
            args = (module.stride, module.padding, module.dilation, module.groups)
            out = F.conv2d(x, params["weight"], params.get("bias"), *args)
        else:
            out = torch.func.functional_call(module, params, (x,))
        return torch.autograd.grad(out, params["weight"], grad.double().contiguous())[0]


def finite_or_str(value: float) -> float | str:
    """A float rounded for a results file, or ``'nan'``/``'inf'`` as text (JSON has no such numbers)."""
    return round(value, 6) if math.isfinite(value) else str(value)


def audit_conv_weight_grads(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, bf16: bool, channels_last: bool = True
) -> dict:
    """One cross-entropy training step of ``net`` as it is (train mode, its modules; the input channels-last if
    ``channels_last``; bf16 autocast on the CPU if ``bf16``) and each convolution's weight gradient against a
    float64 recomputation.

    Returns ``convolutions`` (how many were judged), ``max_rel_err`` and ``worst`` (the largest relative
    error and its module), ``bad`` (modules above :data:`BAD_GRADIENT`, or not finite) and ``ok``. bf16
    rounding of the result gives relative errors of about 4e-3.
    """
    net.train()
    capture = _ConvCapture(net)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        net.zero_grad(set_to_none=True)
        loss.backward()
    finally:
        capture.active = False
        capture.remove()
    modules = dict(net.named_modules())
    errors = {}
    for name, inputs in capture.inputs.items():
        grads = capture.grads.get(name, [])
        if len(inputs) != 1 or len(grads) != 1 or modules[name].weight.grad is None:
            continue
        reference = _reference_weight_grad(modules[name], inputs[0], grads[0])
        scale = float(reference.norm())
        if scale > 0:
            errors[name] = float((modules[name].weight.grad.double() - reference).norm()) / scale
    bad = sorted(name for name, e in errors.items() if not e <= BAD_GRADIENT)
    worst = max(errors, key=lambda n: errors[n] if math.isfinite(errors[n]) else math.inf, default=None)
    return {
        "convolutions": len(errors),
        "max_rel_err": finite_or_str(errors[worst]) if worst else None,
        "worst": worst,
        "bad": bad,
        "ok": not bad,
    }

"""What a model costs (parameters, FLOPs, size), what it attends to (MassAtt maps), and changing the class
of some of its modules in place."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_size_mb(model: nn.Module) -> float:
    """Size of parameters and buffers in MiB, as stored in a checkpoint's ``state_dict``."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def count_flops(model: nn.Module, input_shape: tuple[int, ...], *, per_module: bool = False):
    """FLOPs of one forward pass on a zero input of ``input_shape`` (batch 1), via torch's flop counter.

    A multiply-add counts as two FLOPs. With ``per_module=True`` returns ``(total, {module: flops})``
    using the counter's module hierarchy (keys like ``"LANMSFF.blocks.0"``).
    """
    device = next(model.parameters()).device
    x = torch.zeros(1, *input_shape, device=device)
    with _eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    total = counter.get_total_flops()
    if not per_module:
        return total
    return total, {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Collect MassAtt maps during forward passes, without touching the forward code.

    Yields a dict filled on every forward with ``"<module path>.channel"`` ``(B, C, 1, 1)`` and
    ``"<module path>.spatial"`` ``(B, 1, H, W)`` maps (values in [0, 1]); e.g.::

        with capture_attention(model) as maps:
            model(x)
        maps["blocks.1.1.spatial"]  # block 2's spatial map
    """
    from lanmsff.models.blocks import MassAtt

    maps: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, MassAtt):
            for kind in ("channel", "spatial"):
                tap = getattr(module, f"{kind}_tap")

                def hook(_m, _inp, out, key=f"{name}.{kind}"):
                    maps[key] = out.detach()

                handles.append(tap.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for handle in handles:
            handle.remove()


def retype_modules(model: nn.Module, match: Callable[[nn.Module], bool], cls: type[nn.Module]) -> int:
    """Give every module of ``model`` that ``match`` accepts the class ``cls`` in place; returns how many.

    ``cls`` must be a subclass that adds no parameters or buffers (parameters, buffers and state-dict
    keys stay as they are).
    """
    matched = [module for module in model.modules() if match(module)]
    for module in matched:
        module.__class__ = cls
    return len(matched)

"""BatchNorm folding: an eval-mode BatchNorm after a convolution folded into the convolution's weights.

An eval-mode BatchNorm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) * gamma + beta``;
after a convolution it folds into the convolution's weight and bias
(:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`) and is replaced by ``nn.Identity``. LANMSFF's
``ConvBN`` (plain and depthwise-separable, where BN follows the pointwise conv) folds entirely; other
models fold wherever a ``Conv2d`` is directly followed by a ``BatchNorm2d`` in an ``nn.Sequential``
(timm's ``BatchNormAct2d`` too: its activation stays) or torch.fx finds such a pair, and the rest is
left as it is.
"""

from __future__ import annotations

import collections
import itertools
import warnings

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lanmsff.models.blocks import SeparableConv2d


def _fusable_bn(module: nn.Module) -> bool:
    """An eval-time BatchNorm2d whose effect is exactly its affine map (plus, for timm, an activation)."""
    if not isinstance(module, nn.BatchNorm2d) or not module.track_running_stats or module.running_mean is None:
        return False
    # subclasses in general may not compute BatchNorm's function in evaluation
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


def split_name(model: nn.Module, name: str) -> tuple[nn.Module, str]:
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
        _fold_pair(*split_name(model, conv_name), *split_name(model, bn_name))
        folded += 1
    return folded


def count_batchnorm(model: nn.Module) -> int:
    """Number of BatchNorm layers (any dimension) in ``model``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())

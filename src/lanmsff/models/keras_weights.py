"""Import weights saved by the authors' Keras code (``model.save_weights(...)``, Keras 3 ``.weights.h5``).

The file holds one group per Keras layer, ``layers/<name>/vars/<i>``, where ``<name>`` is the snake-case
class name plus a per-class counter in creation order (``conv2d``, ``conv2d_1``, ...). Layers are
matched per class in that order to the PyTorch modules of the same kind, in the order
:class:`~lanmsff.models.LANMSFF` registers them (which follows the reference's creation order). Only
h5py is needed; TensorFlow is not.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from lanmsff.errors import UserError
from lanmsff.models.blocks import SeparableConv2d

_KERAS_NAME = re.compile(r"^(conv2d_transpose|separable_conv2d|batch_normalization|conv2d|dense)(?:_(\d+))?$")


def _keras_layers(path: Path) -> dict[str, list[tuple[str, list[np.ndarray]]]]:
    """Weighted layers by Keras class, each list in creation order: ``{kind: [(name, [vars])]}``."""
    layers: dict[str, list[tuple[int, str, list[np.ndarray]]]] = defaultdict(list)
    with h5py.File(path, "r") as f:
        if "layers" not in f:
            raise UserError(f"{path}: not a Keras 3 .weights.h5 file (no 'layers' group)")
        for name, group in f["layers"].items():
            variables = group.get("vars")
            if variables is None or len(variables) == 0:
                continue
            match = _KERAS_NAME.match(name)
            if match is None:
                raise UserError(f"{path}: layer {name!r} has weights but is not a layer type of the LANMSFF reference")
            arrays = [np.asarray(variables[str(i)]) for i in range(len(variables))]
            layers[match[1]].append((int(match[2] or 0), name, arrays))
    return {kind: [(name, arrays) for _, name, arrays in sorted(items)] for kind, items in layers.items()}


def _torch_layers(model: nn.Module) -> dict[str, list[tuple[str, nn.Module]]]:
    """Modules of ``model`` grouped by the Keras class they correspond to, in registration order."""
    layers: dict[str, list[tuple[str, nn.Module]]] = defaultdict(list)
    inside_separable: set[int] = set()
    for name, module in model.named_modules():
        if isinstance(module, SeparableConv2d):
            layers["separable_conv2d"].append((name, module))
            inside_separable.update(id(m) for m in module.modules())
        elif isinstance(module, nn.ConvTranspose2d):
            layers["conv2d_transpose"].append((name, module))
        elif isinstance(module, nn.Conv2d) and id(module) not in inside_separable:
            layers["conv2d"].append((name, module))
        elif isinstance(module, nn.BatchNorm2d):
            layers["batch_normalization"].append((name, module))
        elif isinstance(module, nn.Linear):
            layers["dense"].append((name, module))
    return layers


def _targets(kind: str, module: nn.Module) -> list[tuple[torch.Tensor, tuple[int, ...]]]:
    """The tensors a Keras layer's variables go to, each with the transpose from Keras' layout."""
    conv = (3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw); transposed convs map the same way
    if kind == "separable_conv2d":
        return [(module.depthwise.weight, (2, 3, 0, 1)), (module.pointwise.weight, conv), (module.pointwise.bias, (0,))]
    if kind in ("conv2d", "conv2d_transpose"):
        return [(module.weight, conv), (module.bias, (0,))]
    if kind == "dense":
        return [(module.weight, (1, 0)), (module.bias, (0,))]
    return [(module.weight, (0,)), (module.bias, (0,)), (module.running_mean, (0,)), (module.running_var, (0,))]


def load_keras_weights(model: nn.Module, path: str | Path) -> list[tuple[str, str]]:
    """Copy the weights of a Keras ``.weights.h5`` file into ``model`` (in place).

    Returns the ``(keras_layer, torch_module)`` pairs that were matched. Raises :class:`UserError`
    naming the layers when the number of layers of a kind, or a variable's shape, does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such Keras weights file")
    keras, torch_side = _keras_layers(path), _torch_layers(model)
    for kind in sorted(set(keras) | set(torch_side)):
        k_names = [n for n, _ in keras.get(kind, [])]
        t_names = [n for n, _ in torch_side.get(kind, [])]
        if len(k_names) != len(t_names):
            raise UserError(
                f"{path}: {len(k_names)} Keras {kind} layers ({', '.join(k_names) or 'none'}) but the model has "
                f"{len(t_names)} ({', '.join(t_names) or 'none'}); is it the same LANMSFF configuration?"
            )
    pairs = []
    with torch.no_grad():
        for kind, items in keras.items():
            for (k_name, arrays), (t_name, module) in zip(items, torch_side[kind], strict=True):
                targets = _targets(kind, module)
                if len(arrays) != len(targets):
                    raise UserError(
                        f"{path}: Keras layer {k_name} has {len(arrays)} variables, {t_name} expects {len(targets)}"
                    )
                for i, (array, (tensor, order)) in enumerate(zip(arrays, targets, strict=True)):
                    value = torch.from_numpy(np.ascontiguousarray(array.transpose(order)))
                    if value.shape != tensor.shape:
                        raise UserError(
                            f"{path}: Keras layer {k_name} variable {i} has shape {tuple(array.shape)}, "
                            f"which does not fit {t_name} {tuple(tensor.shape)}"
                        )
                    tensor.copy_(value)
                pairs.append((k_name, t_name))
    return pairs

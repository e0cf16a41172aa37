"""Where the network looks: MassAtt's spatial attention and Grad-CAM heat maps of face crops, and overlays.

* :func:`attention_heatmaps`: the spatial maps of every MassAtt block (captured by
  :func:`lanmsff.models.introspection.capture_attention`), each resized to the input and averaged
  (:func:`spatial_attention`, which :mod:`lanmsff.inference.attention_maps` also uses on the test loop's maps);
* :func:`grad_cam`: Grad-CAM (Selvaraju et al. 2017) of one layer: the layer's activations weighted by the
  spatial mean of the gradient of the predicted class's logit, summed over channels, ReLU, resized to the input;
* :func:`overlay` (from :mod:`lanmsff.heatmaps`): a heat map blended over the gray crop as a colour image.

Maps are ``(N, S, S)`` float arrays in [0, 1] (each scaled by its own maximum). They need the plain network
(eval mode), not an :func:`lanmsff.inference.optimize` copy: TorchScript and ONNX Runtime keep no hooks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lanmsff.heatmaps import overlay
from lanmsff.models.introspection import capture_attention

__all__ = ["attention_heatmaps", "grad_cam", "last_block", "overlay", "spatial_attention"]


def _scaled(maps: torch.Tensor, size: int) -> torch.Tensor:
    """``(N, 1, h, w)`` maps resized to ``size`` and scaled to [0, 1] each (an all-zero map stays zero)."""
    maps = F.interpolate(maps.float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return maps.clamp_min(0) / peak


def _normalised(maps: torch.Tensor, size: int) -> np.ndarray:
    """:func:`_scaled` as a NumPy array."""
    return _scaled(maps, size).cpu().numpy()


def spatial_attention(maps: dict[str, torch.Tensor], size: int) -> torch.Tensor:
    """The mean of the spatial maps that :func:`capture_attention` collected in ``maps``, each resized to
    ``size`` x ``size``, then scaled to [0, 1] per image: ``(N, size, size)`` on the maps' device.

    Raises ``ValueError`` when ``maps`` holds no spatial map (a network without MassAtt's spatial branch).
    """
    spatial = [m for key, m in maps.items() if key.endswith(".spatial")]
    if not spatial:
        raise ValueError("no MassAtt spatial attention to show")
    resized = [F.interpolate(m.float(), size=(size, size), mode="bilinear", align_corners=False) for m in spatial]
    return _scaled(torch.stack(resized).mean(dim=0), size)


@torch.no_grad()
def attention_heatmaps(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The mean of the MassAtt spatial maps of ``net`` on crops ``x`` ``(N, C, S, S)``; ``(N, S, S)`` in [0, 1].

    Raises ``ValueError`` for a network without MassAtt blocks.
    """
    with capture_attention(net) as maps:
        net(x)
    try:
        return spatial_attention(maps, x.shape[-1]).cpu().numpy()
    except ValueError:
        raise ValueError(f"{type(net).__name__} has no MassAtt spatial attention to show") from None


def grad_cam(net: nn.Module, layer: nn.Module, x: torch.Tensor, classes: torch.Tensor | None = None) -> np.ndarray:
    """Grad-CAM of ``layer`` (whose output is ``(N, C, h, w)``) for ``classes`` (default: the predicted ones).

    Returns ``(N, S, S)`` in [0, 1].
    """
    saved: dict[str, torch.Tensor] = {}

    def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        output.retain_grad()
        saved["activation"] = output

    handle = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = net(x.detach().requires_grad_(True))
            chosen = logits.argmax(dim=1) if classes is None else classes
            logits.gather(1, chosen[:, None]).sum().backward()
    finally:
        handle.remove()
    activation = saved["activation"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = (weights * activation).sum(dim=1, keepdim=True).detach()
    return _normalised(F.relu(cam), x.shape[-1])


def last_block(net: nn.Module) -> nn.Module:
    """The layer Grad-CAM looks at: LANMSFF's last block (``net.blocks[-1]``), else the last 2-D convolution."""
    blocks = getattr(net, "blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks):
        return blocks[-1]
    convolutions = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convolutions:
        raise ValueError(f"{type(net).__name__} has no convolution for Grad-CAM")
    return convolutions[-1]

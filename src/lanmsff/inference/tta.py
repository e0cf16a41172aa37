"""Test-time augmentation: class probabilities averaged over mirrored and shifted copies of each face.

``none`` classifies the crop as it is; ``flip`` averages it with its mirror image (expressions are
symmetric, and training mirrors faces at random); ``flip_shift`` adds both of those moved by
``shift`` pixels left, right, up and down (10 views; border pixels replicated), within the random
crop of the training augmentation. The probabilities (softmax of each view's logits) are averaged.

    from lanmsff.inference.tta import tta_probabilities
    probs = tta_probabilities(model, images, "flip")  # (B, 1, S, S) float in [0, 1] -> (B, classes)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lanmsff.errors import check_choice

TTA_MODES = ("none", "flip", "flip_shift")
VIEW_COUNTS = {"none": 1, "flip": 2, "flip_shift": 10}  # images classified per face


def default_shift(image_size: int) -> int:
    """The shift of ``flip_shift``: 1/16 of the side (4 pixels at 64), at least 1."""
    return max(1, round(image_size / 16))


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` moved ``dx`` pixels right and ``dy`` down, the border replicated into the gap."""
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return x
    height, width = x.shape[-2:]
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return padded[..., pad - dy : pad - dy + height, pad - dx : pad - dx + width]


def tta_views(x: torch.Tensor, mode: str = "none", *, shift: int | None = None) -> torch.Tensor:
    """The views of a batch ``(B, C, H, W)`` that ``mode`` averages over, stacked: ``(V, B, C, H, W)``."""
    check_choice("tta", mode, TTA_MODES)
    views = [x] if mode == "none" else [x, x.flip(-1)]
    if mode == "flip_shift":
        s = default_shift(x.shape[-1]) if shift is None else shift
        views += [shifted(v, dx, dy) for v in views for dx, dy in ((s, 0), (-s, 0), (0, s), (0, -s))]
    return torch.stack(views)


@torch.no_grad()
def tta_probabilities(
    model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, mode: str = "none", *, shift: int | None = None
) -> torch.Tensor:
    """Class probabilities ``(B, classes)`` (float32) of a batch, averaged over the views of ``mode``.

    ``model`` maps images ``(N, C, H, W)`` to logits ``(N, classes)`` (a network in eval mode, or the
    result of :func:`lanmsff.inference.optimize`); all views go through it as one batch.
    """
    views = tta_views(x, mode, shift=shift)
    count, batch = views.shape[:2]
    logits = model(views.flatten(0, 1)).float()
    return logits.softmax(dim=1).view(count, batch, -1).mean(dim=0)

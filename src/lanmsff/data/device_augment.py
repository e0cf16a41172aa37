"""The reference augmentation as one batched affine warp on the training device (``data.augment_on_device``).

Each image of a batch becomes one of the four variants of :mod:`lanmsff.data.transforms`, drawn
uniformly: as it is, mirrored, rotated by an angle in [-limit, limit] and zoomed by ``crop_scale``
about the centre, or zoomed with a random crop offset (an integer offset in the
``image_size * crop_scale`` image, as ``RandomCrop`` draws it). All four are affine maps, so the
batch is warped by a single ``affine_grid`` + ``grid_sample`` call on the GPU (or CPU), with black
borders like the albumentations path. Random numbers come from torch's generator on that device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ORIGINAL, FLIP, ROTATE, CROP = range(4)


def paper_affine(
    batch: int,
    *,
    image_size: int = 64,
    rotate_limit: float = 15,
    crop_scale: float = 1.125,
    device=None,
    generator=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample affine matrices ``(B, 2, 3)`` (output -> input, normalised coordinates) and the variant drawn."""
    variant = torch.randint(0, 4, (batch,), device=device, generator=generator)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[variant == FLIP, 0, 0] = -1.0

    rotate = variant == ROTATE
    angle = (torch.rand(batch, device=device, generator=generator) * 2 - 1) * math.radians(rotate_limit)
    cos, sin = torch.cos(angle) / crop_scale, torch.sin(angle) / crop_scale
    theta[rotate, 0, 0], theta[rotate, 0, 1] = cos[rotate], -sin[rotate]
    theta[rotate, 1, 0], theta[rotate, 1, 1] = sin[rotate], cos[rotate]

    crop = variant == CROP
    big = round(image_size * crop_scale)
    offsets = torch.randint(0, big - image_size + 1, (batch, 2), device=device, generator=generator).float()
    shift = (offsets - (big - image_size) / 2) * 2 / big  # crop centre relative to the zoomed image's centre
    theta[crop, 0, 0] = theta[crop, 1, 1] = image_size / big
    theta[crop, 0, 2], theta[crop, 1, 2] = shift[crop, 0], shift[crop, 1]
    return theta, variant


def augment_batch(
    images: torch.Tensor, *, rotate_limit: float = 15, crop_scale: float = 1.125, generator=None
) -> torch.Tensor:
    """Augment a float batch ``(B, C, S, S)`` on its device; values stay in the input range."""
    theta, _ = paper_affine(
        images.shape[0],
        image_size=images.shape[-1],
        rotate_limit=rotate_limit,
        crop_scale=crop_scale,
        device=images.device,
        generator=generator,
    )
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

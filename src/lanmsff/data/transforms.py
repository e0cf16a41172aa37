"""The authors' augmentation recipe, built with albumentations.

Reference (data_augmentation.ipynb): every training image is used four times: as it is,
horizontally flipped, rotated by an angle in [-15, 15] degrees (black borders) then resized to 72
and centre-cropped to 64, and resized to 72 and randomly cropped to 64 (a zoom of 72/64 = 1.125,
kept as ``crop_scale`` for other input sizes).

* ``online`` (default): every epoch, each image is shown as one of the four variants, drawn
  uniformly, so that training sees the same mixture as the paper's expanded set;
* ``offline_4x``: the paper's fixed expansion done once before training (4x the images);
* ``none``: no augmentation.

The un-augmented variant is part of the mixture on purpose: if every training image were zoomed
and rotated, test images (never augmented) would come from a different distribution.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from lanmsff.errors import ConfigError, check_choice

AUGMENT_MODES = ("online", "offline_4x", "none")


def _zoom_crop(image_size: int, crop_scale: float, *, random: bool) -> list[A.BasicTransform]:
    big = round(image_size * crop_scale)
    crop = A.RandomCrop(image_size, image_size) if random else A.CenterCrop(image_size, image_size)
    return [A.Resize(big, big, interpolation=cv2.INTER_LINEAR), crop]


def paper_variants(image_size: int, *, rotate_limit: float = 15, crop_scale: float = 1.125) -> list[A.BasicTransform]:
    """The four variants of the reference: original, flipped, rotated + zoomed, zoomed random crop."""
    if rotate_limit < 0:
        raise ConfigError(f"data.augment.rotate_limit={rotate_limit} must be non-negative")
    if crop_scale < 1:
        raise ConfigError(f"data.augment.crop_scale={crop_scale} must be at least 1 (1 = no zoom)")
    rotate = A.Rotate(limit=rotate_limit, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0)
    return [
        A.NoOp(p=1.0),
        A.HorizontalFlip(p=1.0),
        A.Sequential([rotate, *_zoom_crop(image_size, crop_scale, random=False)], p=1.0),
        A.Sequential(_zoom_crop(image_size, crop_scale, random=True), p=1.0),
    ]


def train_transform(image_size: int, *, rotate_limit: float = 15, crop_scale: float = 1.125) -> A.Compose:
    """The online recipe: one of the four paper variants per image and epoch, uniformly."""
    return A.Compose([A.OneOf(paper_variants(image_size, rotate_limit=rotate_limit, crop_scale=crop_scale), p=1.0)])


def offline_expand(
    images: np.ndarray, *, rotate_limit: float = 15, crop_scale: float = 1.125, seed: int = 0
) -> np.ndarray:
    """The paper's fixed 4x expansion: every image followed by its flipped, rotated and cropped variants.

    Returns an array ``(4 * N, S, S)`` ordered image by image, so labels repeat with ``np.repeat(y, 4)``.
    """
    variants = [
        A.Compose([t], seed=seed + k)
        for k, t in enumerate(paper_variants(images.shape[-1], rotate_limit=rotate_limit, crop_scale=crop_scale))
    ]
    out = np.empty((4 * len(images), *images.shape[1:]), images.dtype)
    for i, image in enumerate(images):
        for k, variant in enumerate(variants):
            out[4 * i + k] = variant(image=image)["image"]
    return out


def check_augment(mode: str) -> None:
    check_choice("data.augment.mode", mode, AUGMENT_MODES)

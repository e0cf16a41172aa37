"""Turning photographs into the network's input: decode, crop the face, grayscale, resize.

KDEF photographs are 562x762 studio portraits with the head near the centre. Until face detection
is configured, the face is cut out with a fixed square box per camera angle calibrated for that
framing (:data:`KDEF_FACE_BOXES`, in fractions of width and height so that it scales with the image):
a 320x320 square around the face, moved towards the side the face turns to in half and full profiles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from lanmsff.utils.progress import track

KDEF_FRAME = (562, 762)
_BOX_SIDE, _BOX_TOP = 320, 190
_BOX_CENTRE_X = {"FL": 221, "HL": 251, "S": 281, "HR": 311, "FR": 341}


def _fractional_box(centre_x: float) -> tuple[float, float, float, float]:
    w, h = KDEF_FRAME
    left = centre_x - _BOX_SIDE / 2
    return (left / w, _BOX_TOP / h, (left + _BOX_SIDE) / w, (_BOX_TOP + _BOX_SIDE) / h)


# (left, top, right, bottom) as fractions of the frame, per KDEF angle code.
KDEF_FACE_BOXES = {angle: _fractional_box(x) for angle, x in _BOX_CENTRE_X.items()}


class UnreadableImage(Exception):
    """An image file that cannot be decoded."""


def read_gray(path: str | Path) -> np.ndarray:
    """Decode an image file as 8-bit grayscale; raise :class:`UnreadableImage` if it cannot be read."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise UnreadableImage(f"{path}: zero-byte file")
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise UnreadableImage(f"{path}: not a decodable image")
    return image


def crop_box(image: np.ndarray, box: Sequence[float] = KDEF_FACE_BOXES["S"]) -> np.ndarray:
    """Cut the fractional ``(left, top, right, bottom)`` box out of ``image``."""
    h, w = image.shape[:2]
    left, top, right, bottom = box
    return image[int(round(top * h)) : int(round(bottom * h)), int(round(left * w)) : int(round(right * w))]


def preprocess(path: str | Path, image_size: int, *, box: Sequence[float] | None = None) -> np.ndarray:
    """One face as a ``(image_size, image_size)`` uint8 array; ``box`` = fractional crop, None = whole image."""
    image = read_gray(path)
    if box is not None:
        image = crop_box(image, box)
    return cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)


def preprocess_many(
    paths: Sequence[str | Path],
    image_size: int,
    *,
    boxes: Sequence[Sequence[float] | None] | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Preprocess many files in parallel threads (OpenCV releases the GIL); shape ``(N, S, S)``."""
    workers = workers or min(len(os.sched_getaffinity(0)), 8)
    out = np.empty((len(paths), image_size, image_size), np.uint8)

    def work(i: int) -> None:
        out[i] = preprocess(paths[i], image_size, box=boxes[i] if boxes is not None else None)

    with ThreadPoolExecutor(workers) as pool:
        for _ in track(pool.map(work, range(len(paths))), total=len(paths), description="Preprocessing faces"):
            pass
    return out

"""Small image files for the readers' tests: every data set's layout is tested on generated trees."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np


def write_jpeg(path: Path, *, side: int = 48, seed: str | None = None, black: bool = False) -> Path:
    """A small, decodable, not-black JPEG at ``path`` (its content drawn from the file name), or a black one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if black:
        pixels = np.zeros((side, side, 3), np.uint8)
    else:
        rng = np.random.default_rng(zlib.crc32((seed or path.name).encode()))
        pixels = rng.integers(40, 220, (side, side, 3), dtype=np.uint8)
    path.write_bytes(cv2.imencode(".jpg", pixels)[1].tobytes())
    return path


def truncate(path: Path) -> None:
    """Cut a JPEG in half (no end-of-image marker), as interrupted downloads leave them."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

"""From photograph to network input: decode, find the face, crop, grayscale, resize.

Face detection uses the Haar cascades shipped inside the OpenCV wheel (``cv2.data.haarcascades``):
the frontal cascade and the profile cascade, the latter also on the mirrored image for faces turned
the other way. Which is tried first depends on the KDEF angle (:data:`DETECTOR_ORDER`). The largest
detection is expanded by ``margin`` (a fraction of its side, on every side) to a square; when
nothing is found, a fixed per-angle box calibrated for KDEF's studio framing is used instead
(:data:`KDEF_FACE_BOXES`), and the crop is counted as a fallback.

Crop modes (``data.face_crop``): ``detect`` (cascades, fallback box), ``box`` (always the fixed
box), ``none`` (the whole image). ``true`` / ``false`` mean ``detect`` / ``none``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lanmsff.errors import check_choice

FACE_CROP_MODES = ("detect", "box", "none")
DEFAULT_MARGIN = 0.2
DETECT_WIDTH = 128  # detection runs on an image this wide: KDEF faces fill ~half of the frame
MIN_FACE = 0.25  # smallest face side searched for, as a fraction of the image width

KDEF_FRAME = (562, 762)
_BOX_SIDE, _BOX_TOP = 320, 190
_BOX_CENTRE_X = {"FL": 221, "HL": 251, "S": 281, "HR": 311, "FR": 341}


def _fractional_box(centre_x: float) -> tuple[float, float, float, float]:
    w, h = KDEF_FRAME
    left = centre_x - _BOX_SIDE / 2
    return (left / w, _BOX_TOP / h, (left + _BOX_SIDE) / w, (_BOX_TOP + _BOX_SIDE) / h)


# (left, top, right, bottom) as fractions of the frame, per KDEF angle code: a 320x320 square (in a
# 562x762 frame) around the face, moved towards the side the face turns to in half and full profiles.
KDEF_FACE_BOXES = {angle: _fractional_box(x) for angle, x in _BOX_CENTRE_X.items()}
DETECTOR_ORDER = {
    "S": ("frontal", "profile", "profile_mirrored"),
    "HL": ("profile", "profile_mirrored", "frontal"),
    "FL": ("profile", "profile_mirrored", "frontal"),
    "HR": ("profile_mirrored", "profile", "frontal"),
    "FR": ("profile_mirrored", "profile", "frontal"),
}


class UnreadableImage(Exception):
    """An image file that cannot be used; the message is the reason reported to the user."""


def normalise_crop_mode(mode: str | bool) -> str:
    """``data.face_crop`` as one of :data:`FACE_CROP_MODES` (``True`` -> detect, ``False`` -> none)."""
    if mode is True:
        return "detect"
    if mode is False or mode is None:
        return "none"
    check_choice("data.face_crop", mode, [*FACE_CROP_MODES, True, False])
    return str(mode)


MAX_PIXELS = 100_000_000  # larger images are decoded reduced (JPEG) or refused (other formats)
_FLAGS = {
    (False, 1): cv2.IMREAD_GRAYSCALE,
    (False, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (False, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (False, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    (True, 1): cv2.IMREAD_COLOR,
    (True, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (True, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (True, 8): cv2.IMREAD_REDUCED_COLOR_8,
}


def declared_size(buf: np.ndarray) -> tuple[int, int] | None:
    """``(width, height)`` from the image header without decoding the pixels; ``None`` if unknown.

    Raises :class:`UnreadableImage` for headers so large that Pillow refuses them (decompression bombs).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(buf.tobytes())) as image:
                return image.size
        except Image.DecompressionBombError as err:
            raise UnreadableImage(f"declares an image too large to decode ({err})") from None
        except Exception:
            return None


def decode_image(
    data: bytes | np.ndarray, *, color: bool = False, reduce: int = 1, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode image bytes (JPEG, PNG incl. 16-bit/RGBA/grayscale, BMP, WebP) as 8-bit gray or BGR.

    EXIF orientation is applied. ``reduce`` (1, 2, 4, 8) shrinks while decoding. An image whose header
    declares more than ``max_pixels`` is decoded reduced when it is a JPEG and refused otherwise, so
    a hostile header never allocates gigabytes. Raises :class:`UnreadableImage` with the reason.
    """
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    if buf.size == 0:
        raise UnreadableImage("zero-byte file")
    is_jpeg = buf[:2].tobytes() == b"\xff\xd8"
    if is_jpeg and np.trim_zeros(buf[-64:], "b")[-2:].tobytes() != b"\xff\xd9":
        raise UnreadableImage("truncated JPEG (no end-of-image marker)")
    size = declared_size(buf)
    if size is not None and size[0] * size[1] > max_pixels * reduce**2:
        while is_jpeg and reduce < 8 and size[0] * size[1] > max_pixels * reduce**2:
            reduce *= 2
        if size[0] * size[1] > max_pixels * reduce**2:
            declared, limit = f"{size[0]}x{size[1]}", f"{max_pixels // 10**6} MP"
            raise UnreadableImage(f"declares {declared} pixels, more than the {limit} limit (a decompression bomb?)")
    image = cv2.imdecode(buf, _FLAGS[(color, reduce)])
    if image is None or image.size == 0:
        raise UnreadableImage("not a decodable image")
    return image


def decode_gray(data: bytes | np.ndarray, *, reduce: int = 1) -> np.ndarray:
    """Decode image bytes as 8-bit grayscale (see :func:`decode_image`)."""
    return decode_image(data, color=False, reduce=reduce)


def check_not_placeholder(gray: np.ndarray) -> None:
    """Raise :class:`UnreadableImage` for the black placeholder images of some KDEF copies."""
    if float(gray.mean()) < 10 and float(gray.std()) < 10:
        raise UnreadableImage("black placeholder image (all dark)")


class FaceDetector:
    """Haar cascades of the OpenCV wheel; ``detect`` returns the largest face in pixel coordinates.

    Args:
        detect_width: images are downscaled to this width for detection (speed).
        min_face: smallest face side searched for, as a fraction of the image width. The defaults
            suit KDEF's studio portraits (one large face); photos of groups need smaller values.
    """

    def __init__(self, *, detect_width: int = DETECT_WIDTH, min_face: float = MIN_FACE) -> None:
        self.detect_width, self.min_face = detect_width, min_face
        root = Path(cv2.data.haarcascades)
        self.frontal = cv2.CascadeClassifier(str(root / "haarcascade_frontalface_default.xml"))
        self.profile = cv2.CascadeClassifier(str(root / "haarcascade_profileface.xml"))
        if self.frontal.empty() or self.profile.empty():  # pragma: no cover - broken OpenCV install
            raise RuntimeError(f"cannot load the Haar cascades from {root}")

    def _run(self, cascade: cv2.CascadeClassifier, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        side = max(int(gray.shape[1] * self.min_face), 20)
        found = cascade.detectMultiScale(gray, scaleFactor=1.15, minNeighbors=4, minSize=(side, side))
        return [tuple(int(v) for v in b) for b in found]

    def detect_all(self, gray: np.ndarray, method: str) -> list[tuple[int, int, int, int]]:
        """Boxes ``(x, y, w, h)`` found by one method on a (small) grayscale image."""
        if method == "frontal":
            return self._run(self.frontal, gray)
        if method == "profile":
            return self._run(self.profile, gray)
        width = gray.shape[1]
        return [(width - x - w, y, w, h) for x, y, w, h in self._run(self.profile, cv2.flip(gray, 1))]

    def detect(self, gray: np.ndarray, order: Sequence[str]) -> tuple[tuple[int, int, int, int], str] | None:
        """The largest face found by the first method in ``order`` that finds one, scaled to ``gray``."""
        scale = min(1.0, self.detect_width / gray.shape[1])
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        for method in order:
            boxes = self.detect_all(small, method)
            if boxes:
                x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
                return (round(x / scale), round(y / scale), round(w / scale), round(h / scale)), method
        return None


def square_around(box: tuple[int, int, int, int], margin: float) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the square centred on ``box`` (x, y, w, h), grown by ``margin``."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return left, top, left + round(side), top + round(side)


def crop(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut ``(left, top, right, bottom)`` out of ``gray``, replicating the border where it sticks out."""
    h, w = gray.shape[:2]
    left, top, right, bottom = box
    pad = max(0, -left, -top, right - w, bottom - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return gray[top + pad : bottom + pad, left + pad : right + pad]


def fraction_box(shape: tuple[int, ...], box: Sequence[float]) -> tuple[int, int, int, int]:
    """A fractional ``(left, top, right, bottom)`` box in pixels of an image of ``shape``."""
    h, w = shape[:2]
    left, top, right, bottom = box
    return round(left * w), round(top * h), round(right * w), round(bottom * h)


def face_crop(
    gray: np.ndarray, angle: str, mode: str, *, detector: FaceDetector | None = None, margin: float = DEFAULT_MARGIN
) -> tuple[np.ndarray, str]:
    """The face region of a KDEF-framed photograph and how it was found (frontal, profile, ..., box, none)."""
    if mode == "none":
        return gray, "none"
    if mode == "detect":
        found = (detector or FaceDetector()).detect(gray, DETECTOR_ORDER.get(angle, DETECTOR_ORDER["S"]))
        if found is not None:
            box, method = found
            return crop(gray, square_around(box, margin)), method
    return crop(gray, fraction_box(gray.shape, KDEF_FACE_BOXES.get(angle, KDEF_FACE_BOXES["S"]))), "box"


def preprocess_file(
    path: str | Path,
    image_size: int,
    *,
    angle: str = "S",
    mode: str = "detect",
    margin: float = DEFAULT_MARGIN,
    detector: FaceDetector | None = None,
) -> tuple[np.ndarray, str]:
    """One photograph as a ``(image_size, image_size)`` uint8 face and the crop method used.

    Raises :class:`UnreadableImage` (with the reason) for files that cannot be used.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UnreadableImage(f"cannot be read ({err.strerror or err})") from None
    gray = decode_gray(data, reduce=2 if image_size <= 128 else 1)
    check_not_placeholder(gray)
    face, method = face_crop(gray, angle, mode, detector=detector, margin=margin)
    return cv2.resize(face, (image_size, image_size), interpolation=cv2.INTER_AREA), method

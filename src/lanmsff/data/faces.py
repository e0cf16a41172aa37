"""From photograph to network input: decode, find the face, crop, grayscale, resize.

Two face detectors (``data.face_detector``, :data:`FACE_DETECTORS`):

* ``cnn``: MTCNN (:class:`lanmsff.data.detectors.MTCNNDetector`), boxes with five landmarks;
* ``haar``: the Haar cascades shipped inside the OpenCV wheel (``cv2.data.haarcascades``), the
  frontal cascade and the profile cascade, the latter also on the mirrored image for faces turned
  the other way (:class:`FaceDetector`; no landmarks). On KDEF photos the cascade tried first depends
  on the angle (:data:`DETECTOR_ORDER`).

The largest detection is expanded by ``margin`` (a fraction of its side, on every side) to a square,
rotated so that the eyes are level when alignment is on and the detector gave landmarks
(:func:`face_square`); when nothing is found, a fixed per-angle box calibrated for KDEF's studio
framing is used instead (:data:`KDEF_FACE_BOXES`), and the crop is counted as a fallback.

Crop modes (``data.face_crop``): ``detect`` (detector, fallback box), ``box`` (always the fixed
box), ``none`` (the whole image). ``true`` / ``false`` mean ``detect`` / ``none``.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from lanmsff.data.face_geometry import Detection, alignment_matrix, transform_points
from lanmsff.errors import check_choice

if TYPE_CHECKING:  # the CNN detector (torch) is imported only when one is made: make_detector
    from lanmsff.data.detectors import MTCNNDetector

FACE_CROP_MODES = ("detect", "box", "none")
FACE_DETECTORS = ("cnn", "haar")
# What a stored config without data.face_detector / data.face_align was made with; lanmsff/conf/data/kdef.yaml
# chooses cnn (measured: docs/faces.md).
LEGACY_FACE_DETECTOR = "haar"
DEFAULT_MARGIN = 0.2
DETECT_WIDTH = 128  # Haar detection runs on an image this wide: KDEF faces fill ~half of the frame
CNN_DETECT_WIDTH = 160  # CNN detection on KDEF photos runs on an image this wide (faces ~80 px)
MIN_FACE = 0.25  # smallest face side searched for, as a fraction of the image width
HAAR_METHODS = ("frontal", "profile", "profile_mirrored")

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


def read_image(path: str | Path, *, color: bool = False, reduce: int = 1) -> np.ndarray:
    """The image file at ``path`` decoded as 8-bit gray or BGR (:func:`decode_image`).

    Raises :class:`UnreadableImage` with the reason, also when the file itself cannot be read.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise UnreadableImage(f"cannot be read ({err.strerror or err})") from None
    return decode_image(data, color=color, reduce=reduce)


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
        detect_width: images are downscaled to this width for :meth:`detect` (speed).
        min_face: smallest face side searched for, as a fraction of the image width. The defaults
            suit KDEF's studio portraits (one large face); photos of groups need smaller values.
    """

    reads_color = False  # the cascades search grayscale images

    def __init__(self, *, detect_width: int = DETECT_WIDTH, min_face: float = MIN_FACE) -> None:
        self.detect_width, self.min_face = detect_width, min_face
        root = Path(cv2.data.haarcascades)
        self.frontal = cv2.CascadeClassifier(str(root / "haarcascade_frontalface_default.xml"))
        self.profile = cv2.CascadeClassifier(str(root / "haarcascade_profileface.xml"))
        if self.frontal.empty() or self.profile.empty():  # pragma: no cover - broken OpenCV install
            raise RuntimeError(f"cannot load the Haar cascades from {root}")

    def _run(
        self, cascade: cv2.CascadeClassifier, gray: np.ndarray, side: int | None = None
    ) -> list[tuple[int, int, int, int]]:
        side = side or max(int(gray.shape[1] * self.min_face), 20)
        found = cascade.detectMultiScale(gray, scaleFactor=1.15, minNeighbors=4, minSize=(side, side))
        return [tuple(int(v) for v in b) for b in found]

    def detect_all(self, gray: np.ndarray, method: str, *, side: int | None = None) -> list[tuple[int, int, int, int]]:
        """Boxes ``(x, y, w, h)`` found by one method on a (small) grayscale image (faces of ``side`` px and up)."""
        if method == "frontal":
            return self._run(self.frontal, gray, side)
        if method == "profile":
            return self._run(self.profile, gray, side)
        width = gray.shape[1]
        return [(width - x - w, y, w, h) for x, y, w, h in self._run(self.profile, cv2.flip(gray, 1), side)]

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

    def detect_faces(self, image: np.ndarray, *, min_face: float | None = None) -> list[Detection]:
        """Every face of ``image`` (gray or BGR, searched as it is): all three cascades, merged.

        ``min_face`` is the smallest face side in pixels (default: ``min_face`` of the width, at least 20).
        """
        gray = to_gray(image)
        side = None if min_face is None else max(int(min_face), 20)
        found = [(box, method) for method in HAAR_METHODS for box in self.detect_all(gray, method, side=side)]
        return [Detection(box, None, None, method) for box, method in merge_detections(found)]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box: 1 when one box lies inside the other."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / float(min(aw * ah, bw * bh))


def merge_detections(found: Sequence[tuple[tuple[int, int, int, int], str]], overlap: float = 0.5) -> list:
    """Keep one box per face: frontal detections first, then larger boxes; drop boxes that overlap a kept
    one by more than ``overlap`` of the smaller box (a profile cascade often fires inside a frontal face)."""
    order = sorted(found, key=lambda f: (HAAR_METHODS.index(f[1]), -f[0][2] * f[0][3]))
    kept: list[tuple[tuple[int, int, int, int], str]] = []
    for box, method in order:
        if all(_overlap(box, other) <= overlap for other, _ in kept):
            kept.append((box, method))
    return sorted(kept, key=lambda f: (f[0][0], f[0][1]))


def check_detector(name: str, key: str = "data.face_detector") -> str:
    """``name`` when it is one of :data:`FACE_DETECTORS`, else a :class:`~lanmsff.errors.ConfigError` naming ``key``."""
    check_choice(key, name, FACE_DETECTORS)
    return name


def make_detector(name: str, *, key: str = "data.face_detector") -> FaceDetector | MTCNNDetector:
    """The KDEF-preprocessing detector called ``name`` (:data:`FACE_DETECTORS`); ``key`` names the setting in errors."""
    if check_detector(name, key) == "haar":
        return FaceDetector()
    from lanmsff.data.detectors import MTCNNDetector

    return MTCNNDetector()


def detect_downscaled(
    detector: FaceDetector | MTCNNDetector, image: np.ndarray, scale: float, *, min_face: float | None = None
) -> list[Detection]:
    """Every face of ``image`` searched on a copy shrunk by ``scale`` (when below 1), in ``image``'s pixels.

    ``min_face`` is in pixels of the shrunk copy (the detector's :meth:`detect_faces`).
    """
    if scale >= 1:
        return detector.detect_faces(image, min_face=min_face)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return [d.scaled(1 / scale) for d in detector.detect_faces(small, min_face=min_face)]


def to_gray(image: np.ndarray) -> np.ndarray:
    """A gray or BGR uint8 image as gray."""
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


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


def face_square(
    image: np.ndarray, box: tuple[int, int, int, int], margin: float, *, landmarks: np.ndarray | None = None
) -> np.ndarray:
    """The square around ``box`` grown by ``margin`` (:func:`square_around`), cut out of ``image``.

    With ``landmarks`` (five points, eyes first) the face is rotated about the eye midpoint so that the
    eyes are level (:func:`lanmsff.data.face_geometry.alignment_matrix`): the square, of the same side, is
    centred on the box centre as the rotation moves it. The border is replicated where the square
    leaves the image, as :func:`crop` does.
    """
    left, top, right, bottom = square_around(box, margin)
    if landmarks is None:
        return crop(image, (left, top, right, bottom))
    matrix = alignment_matrix(landmarks)
    x, y, w, h = box
    centre = transform_points(matrix, [(x + w / 2, y + h / 2)])[0]
    side = right - left
    matrix[:, 2] -= centre - side / 2  # into the square's own coordinates
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fraction_box(shape: tuple[int, ...], box: Sequence[float]) -> tuple[int, int, int, int]:
    """A fractional ``(left, top, right, bottom)`` box in pixels of an image of ``shape``."""
    h, w = shape[:2]
    left, top, right, bottom = box
    return round(left * w), round(top * h), round(right * w), round(bottom * h)


def find_face(image: np.ndarray, angle: str, detector: FaceDetector | MTCNNDetector) -> Detection | None:
    """The largest face of a KDEF-framed photograph (gray, or BGR for the CNN), in its pixels.

    The Haar cascades are tried in the angle's order (:data:`DETECTOR_ORDER`); the CNN searches a copy
    :data:`CNN_DETECT_WIDTH` wide for faces of at least :data:`MIN_FACE` of the width.
    """
    if isinstance(detector, FaceDetector):
        found = detector.detect(to_gray(image), DETECTOR_ORDER.get(angle, DETECTOR_ORDER["S"]))
        return None if found is None else Detection(found[0], None, None, found[1])
    scale = min(1.0, CNN_DETECT_WIDTH / image.shape[1])
    faces = detect_downscaled(detector, image, scale, min_face=MIN_FACE * min(image.shape[1], CNN_DETECT_WIDTH))
    return max(faces, key=lambda d: d.box[2] * d.box[3], default=None)


def face_crop(
    image: np.ndarray,
    angle: str,
    mode: str,
    *,
    detector: FaceDetector | MTCNNDetector | None = None,
    margin: float = DEFAULT_MARGIN,
    align: bool = False,
) -> tuple[np.ndarray, str]:
    """The gray face region of a KDEF-framed photograph and how it was found (cnn, frontal, ..., box, none).

    ``image`` is gray, or BGR (what the CNN detector prefers); ``detector`` defaults to the Haar cascades;
    ``align`` levels the eyes when the detector gave landmarks.
    """
    gray = to_gray(image)
    if mode == "none":
        return gray, "none"
    if mode == "detect":
        found = find_face(image, angle, detector or FaceDetector())
        if found is not None:
            landmarks = found.landmarks if align else None
            return face_square(gray, found.box, margin, landmarks=landmarks), found.method
    return crop(gray, fraction_box(gray.shape, KDEF_FACE_BOXES.get(angle, KDEF_FACE_BOXES["S"]))), "box"


def preprocess_file(
    path: str | Path,
    image_size: int,
    *,
    angle: str = "S",
    mode: str = "detect",
    margin: float = DEFAULT_MARGIN,
    detector: FaceDetector | MTCNNDetector | None = None,
    align: bool = False,
) -> tuple[np.ndarray, str]:
    """One photograph as a ``(image_size, image_size)`` uint8 face and the crop method used.

    Raises :class:`UnreadableImage` (with the reason) for files that cannot be used.
    """
    color = mode == "detect" and detector is not None and detector.reads_color
    image = read_image(path, color=color, reduce=2 if image_size <= 128 else 1)
    check_not_placeholder(to_gray(image))
    face, method = face_crop(image, angle, mode, detector=detector, margin=margin, align=align)
    return cv2.resize(face, (image_size, image_size), interpolation=cv2.INTER_AREA), method

"""Faces of photographs: find them, cut them out as in training, classify them; rows and annotated copies.

Every face is found with the chosen detector (``cnn``: MTCNN with five landmarks, the default;
``haar``: the data pipeline's cascades), cut out as in training (a square around the detection, grown
by the training run's ``face_margin``), rotated so that the eyes are level when ``align`` is on and
the detector gave landmarks, converted to grayscale, resized to the network's input and classified
with the optimised inference path (:func:`lanmsff.inference.optimize`), optionally averaged over
mirrored and shifted copies (:mod:`lanmsff.inference.tta`).

Images may be JPEG, PNG (grayscale, 16-bit, RGBA), BMP or WebP; EXIF orientation is applied; large
images are downscaled for detection, never rejected. Files that cannot be used (unreadable, not an
image, zero bytes, no face found) are reported with their reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanmsff.checkpoints import load_model
from lanmsff.data.detectors import LANDMARK_NAMES, MTCNNDetector, one_thread
from lanmsff.data.face_geometry import Detection
from lanmsff.data.faces import (
    DEFAULT_MARGIN,
    FaceDetector,
    UnreadableImage,
    check_detector,
    detect_downscaled,
    face_square,
    read_image,
    to_gray,
)
from lanmsff.errors import ConfigError, UserError, check_choice
from lanmsff.inference import DEFAULT_MICRO_BATCH, optimize
from lanmsff.inference.tta import TTA_MODES, VIEW_COUNTS, tta_probabilities

HAAR_MIN_FACE = 0.05  # the cascades' smallest face in photos, as a fraction of the (downscaled) width
NO_FACE = "no face found"


@dataclass
class Face:
    """One face: its box ``(x, y, w, h)`` in the original image, what found it, class probabilities.

    ``score`` is the detector's confidence and ``landmarks`` its five points ``(5, 2)`` (both ``None``
    for the Haar cascades).
    """

    box: tuple[int, int, int, int]
    detector: str
    probs: np.ndarray
    score: float | None = None
    landmarks: np.ndarray | None = None


@dataclass
class FileResult:
    """What happened to one input file: its faces, or the reason it produced none."""

    file: str
    faces: list[Face] = field(default_factory=list)
    problem: str | None = None


class Predictor:
    """A classifier ready for the faces of photographs and video frames.

    Args:
        model: maps float images ``(N, 1, S, S)`` in [0, 1] to logits (e.g. :func:`lanmsff.inference.optimize`).
        class_names: names of the classes, in the order of the logits.
        image_size: the side ``S`` of the network's input.
        margin: growth of a detection on every side before the crop (the training run's ``face_margin``).
        detector: ``cnn`` (MTCNN, landmarks) or ``haar`` (OpenCV cascades).
        align: rotate faces so that the eyes are level (when the detector gives landmarks).
        tta: ``none``, ``flip`` or ``flip_shift`` (:mod:`lanmsff.inference.tta`).
        detect_side: images are downscaled so that their longer side is at most this for detection.
        min_face: smallest face searched for, in pixels of the downscaled image (``None``: 20 for the
            CNN, 5% of the width for the cascades).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        class_names: Sequence[str],
        image_size: int,
        *,
        margin: float = DEFAULT_MARGIN,
        detector: str = "cnn",
        align: bool = True,
        tta: str = "none",
        detect_side: int = 800,
        min_face: float | None = None,
    ) -> None:
        check_detector(detector, "detector")
        check_choice("tta", tta, TTA_MODES)
        if min_face is not None and min_face < 12:
            raise ConfigError(f"min_face={min_face} is in pixels and must be at least 12 (null: the detector's own)")
        if detect_side < 64:
            raise ConfigError(f"detect_side={detect_side} must be at least 64 pixels")
        self.model, self.class_names, self.image_size = model, list(class_names), int(image_size)
        self.margin, self.align, self.tta = float(margin), bool(align), tta
        self.detect_side, self.min_face = int(detect_side), min_face
        self.detector = (
            MTCNNDetector() if detector == "cnn" else FaceDetector(detect_width=detect_side, min_face=HAAR_MIN_FACE)
        )

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | Path,
        *,
        precision: str = "auto",
        backend: str = "eager",
        expect_classes: int | None = None,
        **options: Any,
    ) -> Predictor:
        """A predictor for a checkpoint written by ``train.py`` (margin from its training config).

        ``precision`` and ``backend`` go to :func:`lanmsff.inference.optimize`; ``expect_classes`` fails
        unless the checkpoint has this many classes; ``options`` are those of :class:`Predictor`.
        """
        net, class_names, image_size, config = load_model(ckpt_path)
        if expect_classes is not None and len(class_names) != expect_classes:
            raise UserError(
                f"ckpt_path={ckpt_path} classifies {len(class_names)} classes ({', '.join(class_names)}), "
                f"not expect_classes={expect_classes}"
            )
        margin = float(((config or {}).get("data") or {}).get("face_margin", DEFAULT_MARGIN))
        model = optimize(net, precision=precision, backend=backend)
        return cls(model, class_names, image_size, margin=margin, **options)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces of an image (gray or BGR, any size) in its own coordinates, left to right."""
        scale = min(1.0, self.detect_side / max(image.shape[:2]))
        return detect_downscaled(self.detector, image, scale, min_face=self.min_face)

    def crops(self, gray: np.ndarray, detections: Sequence[Detection]) -> torch.Tensor:
        """The network's input ``(N, 1, S, S)`` for the faces at ``detections`` (aligned if asked)."""
        size = (self.image_size, self.image_size)
        faces = [
            face_square(gray, d.box, self.margin, landmarks=d.landmarks if self.align else None) for d in detections
        ]
        stacked = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in faces])
        return torch.from_numpy(stacked).float().div_(255.0).unsqueeze(1)

    @torch.inference_mode()
    def classify(self, gray: np.ndarray, detections: Sequence[Detection]) -> np.ndarray:
        """Class probabilities ``(len(detections), num_classes)`` of the faces at ``detections``.

        A batch of at most one micro-batch (a few faces) runs on one thread: for so little work the
        threads mostly wait on each other, and on a busy machine a second thread made it 10x slower.
        """
        if not detections:
            return np.zeros((0, len(self.class_names)), np.float32)
        small = len(detections) * VIEW_COUNTS[self.tta] <= DEFAULT_MICRO_BATCH
        with one_thread() if small else contextlib.nullcontext():
            return tta_probabilities(self.model, self.crops(gray, detections), self.tta).numpy()

    def faces(self, image: np.ndarray) -> list[Face]:
        """Every face of an image (gray or BGR), found and classified."""
        found = self.detect(image)
        probs = self.classify(to_gray(image), found)
        return [Face(d.box, d.method, p, d.score, d.landmarks) for d, p in zip(found, probs, strict=True)]

    def predict_file(self, path: Path) -> tuple[FileResult, np.ndarray | None]:
        """Faces of one image file, and the decoded colour image (for annotation) when it could be read."""
        try:
            image = read_image(path, color=True)
        except UnreadableImage as err:
            return FileResult(str(path), problem=str(err)), None
        faces = self.faces(image)
        return FileResult(str(path), faces=faces, problem=None if faces else NO_FACE), image


def draw_face(image: np.ndarray, face: Face, label: str, *, color: tuple[int, int, int] = (0, 220, 0)) -> None:
    """Draw a face's box, landmarks and ``label`` onto ``image`` (BGR, in place)."""
    x, y, w, h = face.box
    thickness = max(2, round(max(image.shape[:2]) / 400))
    cv2.rectangle(image, (x, y), (x + w, y + h), color, thickness)
    if face.landmarks is not None:
        for px, py in face.landmarks:
            cv2.circle(image, (round(float(px)), round(float(py))), thickness + 1, (0, 200, 255), -1)
    scale = thickness / 3
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(y - th - 2 * thickness, 0)
    cv2.rectangle(image, (x, top), (x + tw + 2 * thickness, top + th + 2 * thickness), color, -1)
    cv2.putText(
        image, label, (x + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
    )


def face_label(probs: np.ndarray, class_names: Sequence[str]) -> str:
    """``expression probability`` of the most probable class."""
    best = int(probs.argmax())
    return f"{class_names[best]} {probs[best]:.2f}"


def annotate(image: np.ndarray, faces: Sequence[Face], class_names: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` with a box, landmarks and ``label probability`` drawn for every face."""
    out = image.copy()
    for face in faces:
        draw_face(out, face, face_label(face.probs, class_names))
    return out


def face_columns(face: Face, class_names: Sequence[str]) -> dict[str, Any]:
    """Box, detector, score, landmarks and class probabilities of one face, as output columns."""
    x, y, w, h = face.box
    marks: dict[str, Any] = {}
    for name, point in zip(LANDMARK_NAMES, [None] * 5 if face.landmarks is None else face.landmarks, strict=True):
        marks[f"{name}_x"] = None if point is None else round(float(point[0]), 1)
        marks[f"{name}_y"] = None if point is None else round(float(point[1]), 1)
    return {
        "x": x,
        "y": y,
        "w": w,
        "h": h,
        "detector": face.detector,
        "score": None if face.score is None else round(float(face.score), 4),
        **marks,
        **probability_columns("p_", face.probs, class_names),
    }


def probability_columns(prefix: str, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, float]:
    """``{prefix + class: probability}`` rounded to 6 digits."""
    return {f"{prefix}{name}": round(float(p), 6) for name, p in zip(class_names, probs, strict=True)}


def result_rows(result: FileResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for the CSV / JSON lines output: one per face, or one with the problem."""
    if result.problem is not None:
        return [{"file": result.file, "face": None, "problem": result.problem}]
    rows = []
    for i, face in enumerate(result.faces):
        best = int(face.probs.argmax())
        columns = face_columns(face, class_names)
        rows.append(
            {
                "file": result.file,
                "face": i,
                **columns,
                "expression": class_names[best],
                "probability": round(float(face.probs[best]), 6),
                "problem": None,
            }
        )
    return rows

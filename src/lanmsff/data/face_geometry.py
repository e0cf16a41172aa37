"""Faces as found: the :class:`Detection` every detector returns, and eye-levelling alignment.

Plain numpy and OpenCV (no torch), so the preprocessing code that only moves boxes and landmarks
around does not load a deep-learning framework. Coordinates are image pixels (x right, y down);
landmarks are ordered left eye, right eye, nose, left mouth corner, right mouth corner, "left" meaning
the image's left (the person's right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(eq=False)
class Detection:
    """One face: ``box`` ``(x, y, w, h)`` in image pixels, ``score`` in [0, 1], ``landmarks`` ``(5, 2)``.

    ``landmarks`` is ``None`` for detectors without landmarks (the Haar cascades); ``method`` names what
    found the face (``cnn``, or the cascade: ``frontal``, ``profile``, ``profile_mirrored``).
    """

    box: tuple[int, int, int, int]
    score: float | None
    landmarks: np.ndarray | None
    method: str = "cnn"

    def scaled(self, factor: float) -> Detection:
        """This detection in the pixels of an image ``factor`` times as large (e.g. 1 / detection scale)."""
        landmarks = None if self.landmarks is None else (self.landmarks * factor).astype(np.float32)
        box = tuple(round(v * factor) for v in self.box)
        return Detection(box, self.score, landmarks, self.method)  # type: ignore[arg-type]


def eye_angle(landmarks: np.ndarray) -> float:
    """Angle in degrees of the line from the left to the right eye (positive: the right eye is lower)."""
    (lx, ly), (rx, ry) = np.asarray(landmarks, dtype=np.float64)[:2]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def alignment_matrix(landmarks: np.ndarray) -> np.ndarray:
    """The 2x3 affine matrix that rotates an image about the eye midpoint so that the eyes are level."""
    centre = np.asarray(landmarks, dtype=np.float64)[:2].mean(axis=0)
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), eye_angle(landmarks), 1.0)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` ``(N, 2)`` mapped by a 2x3 affine ``matrix`` (landmarks or a box centre into the aligned image)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``image`` rotated about the eye midpoint so that the eyes are level (same size, border replicated).

    The eye midpoint stays where it was, so to crop the aligned face take the detection's square
    (``lanmsff.data.faces.square_around(box, margin)``) re-centred on the box centre mapped by
    :func:`alignment_matrix` and :func:`transform_points`; the side needs no change (the rotation keeps
    sizes), and a tilted face's box was drawn around the tilted face, so it is if anything a bit large.
    """
    matrix = alignment_matrix(landmarks)
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

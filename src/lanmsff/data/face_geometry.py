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


# ----------------------------------------------------------------------------- head pose
# An average adult face at the five landmarks, in millimetres: x to the image's right, y down, z away from the
# camera, eye line at y = 0 (left eye, right eye, nose tip, left and right mouth corners, "left" = the image's left).
# x and y: the symmetrised five-point template of frontal faces used to align faces for ArcFace (112x112 pixels),
# scaled to a 63 mm distance between the eyes; z: the nose tip 30 mm and the mouth corners 10 mm before the eyes.
MEAN_FACE_MM = np.array(
    [[-31.5, 0.0, 0.0], [31.5, 0.0, 0.0], [0.0, 36.0, -30.0], [-26.0, 72.8, -10.0], [26.0, 72.8, -10.0]],
    dtype=np.float64,
)
# KDEF's five camera angles and the head yaw (degrees) each shows: positive yaw is a face turned to the image's
# left, showing its left cheek, as in KDEF's left views.
VIEW_YAWS = {"FL": 90.0, "HL": 45.0, "S": 0.0, "HR": -45.0, "FR": -90.0}
VIEW_SPREAD = 15.0  # degrees: the spread of the yaws of one view in :func:`view_probabilities`
_FOCAL = 1000.0  # the camera of :func:`head_pose`: landmarks scaled to a ~100-pixel face seen from ten faces away


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees and the nearest KDEF view.

    ``yaw``: positive when the face turns to the image's left (KDEF's ``HL``, ``FL``); ``roll``: positive
    when the right eye (image right) is lower. ``view`` is the nearest of :data:`VIEW_YAWS` and ``view_p``
    its probability (:func:`view_probabilities`). There is no pitch: five landmarks do not tell a raised
    head from a smile (both move the mouth corners towards the eyes).
    """

    yaw: float
    roll: float
    view: str
    view_p: float


def rotation_yaw_pitch_roll(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The 3x3 rotation of a head with these angles (degrees; the conventions of :class:`HeadPose`)."""
    y, p, r = np.radians([yaw, pitch, roll])
    turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    nod = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    tilt = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return turn @ nod @ tilt


def project_face(rotation: np.ndarray, *, distance: float = 600.0, focal: float = _FOCAL) -> np.ndarray:
    """The five landmarks ``(5, 2)`` of :data:`MEAN_FACE_MM` rotated and seen by a pinhole camera (pixels)."""
    points = MEAN_FACE_MM @ rotation.T + np.array([0.0, 0.0, distance])
    return focal * points[:, :2] / points[:, 2:]


def view_probabilities(yaw: float) -> dict[str, float]:
    """How well ``yaw`` fits each KDEF view: a normal of :data:`VIEW_SPREAD` degrees around each view's yaw,
    normalised over the five views."""
    weights = {v: math.exp(-0.5 * ((yaw - centre) / VIEW_SPREAD) ** 2) for v, centre in VIEW_YAWS.items()}
    total = sum(weights.values()) or 1.0
    return {v: w / total for v, w in weights.items()}


def nearest_view(yaw: float) -> str:
    """The KDEF view whose yaw is closest to ``yaw`` (:data:`VIEW_YAWS`)."""
    return min(VIEW_YAWS, key=lambda v: abs(VIEW_YAWS[v] - yaw))


def head_pose(landmarks: np.ndarray) -> HeadPose:
    """The head rotation that best maps :data:`MEAN_FACE_MM` onto five landmarks (``(5, 2)``, image pixels).

    A perspective-n-point fit (OpenCV's SQPnP) on the landmarks centred and scaled to a 100-pixel face, seen
    by a camera of focal length 1000 pixels: the face's own size and place in the image do not matter.
    Yaw comes from the left-right asymmetry of the points, which expressions barely change; the fit also
    allows a pitch so that a raised or lowered head does not bend the yaw, but that pitch is not reported.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centred = points - points.mean(axis=0)
    span = float(np.ptp(centred, axis=0).max()) or 1.0
    image = centred * (100.0 / span)
    camera = np.array([[_FOCAL, 0, 0], [0, _FOCAL, 0], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _ = cv2.solvePnP(MEAN_FACE_MM, image, camera, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        raise ValueError("no head pose fits these landmarks")
    rotation, _ = cv2.Rodrigues(rvec)
    # rotation = turn(yaw) @ nod(pitch) @ tilt(roll), as in rotation_yaw_pitch_roll
    yaw = math.degrees(math.atan2(rotation[0, 2], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[1, 1]))
    view = nearest_view(yaw)
    return HeadPose(round(yaw, 2), round(roll, 2), view, round(view_probabilities(yaw)[view], 4))

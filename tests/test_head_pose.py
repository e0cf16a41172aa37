"""Head yaw and roll from five landmarks, and the nearest KDEF view (lanmsff.data.face_geometry.head_pose)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lanmsff.data.detectors import MTCNNDetector
from lanmsff.data.face_geometry import (
    VIEW_YAWS,
    head_pose,
    nearest_view,
    project_face,
    rotation_yaw_pitch_roll,
    view_probabilities,
)

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
YAW_TOLERANCE = 2.0  # degrees, on landmarks projected from the model face (a perspective camera unlike the fit's)
MIRRORED_VIEW = {"FL": "FR", "HL": "HR", "S": "S", "HR": "HL", "FR": "FL"}


def mirrored(landmarks: np.ndarray, width: int) -> np.ndarray:
    """The landmarks of the mirror image: x -> width - x, and left and right swapped (eyes, mouth corners)."""
    flipped = landmarks.copy()
    flipped[:, 0] = width - flipped[:, 0]
    return flipped[[1, 0, 2, 4, 3]]


@pytest.mark.parametrize("yaw", [-90, -75, -60, -45, -30, -15, 0, 15, 30, 45, 60, 75, 90])
@pytest.mark.parametrize(("pitch", "roll"), [(0, 0), (15, 10), (-15, -10)])
def test_yaw_of_projected_landmarks_within_two_degrees(yaw: float, pitch: float, roll: float) -> None:
    landmarks = project_face(rotation_yaw_pitch_roll(yaw, pitch, roll)) + np.array([320.0, 240.0])
    pose = head_pose(landmarks)
    assert abs(pose.yaw - yaw) <= YAW_TOLERANCE, pose
    if abs(yaw) <= 30:  # the in-plane tilt is only the roll while the face is seen nearly from the front
        assert abs(pose.roll - roll) <= YAW_TOLERANCE, pose


@pytest.mark.parametrize(("yaw", "view"), [(-88, "FR"), (-50, "HR"), (-10, "S"), (5, "S"), (40, "HL"), (80, "FL")])
def test_the_view_bucket_is_the_nearest_kdef_angle(yaw: float, view: str) -> None:
    pose = head_pose(project_face(rotation_yaw_pitch_roll(yaw)))
    assert pose.view == view == nearest_view(yaw)
    probabilities = view_probabilities(pose.yaw)
    assert max(probabilities, key=probabilities.get) == view
    assert pose.view_p == pytest.approx(probabilities[view], abs=1e-4)
    assert sum(probabilities.values()) == pytest.approx(1.0)


def test_the_view_is_unsure_halfway_between_two_views() -> None:
    halfway = view_probabilities((VIEW_YAWS["S"] + VIEW_YAWS["HL"]) / 2)
    assert halfway["S"] == pytest.approx(halfway["HL"])
    assert halfway["S"] < 0.51


@pytest.mark.parametrize("yaw", [-70, -35, 20, 60])
def test_a_mirrored_face_has_the_opposite_yaw(yaw: float) -> None:
    landmarks = project_face(rotation_yaw_pitch_roll(yaw, 10, 5)) + np.array([320.0, 240.0])
    pose, flipped = head_pose(landmarks), head_pose(mirrored(landmarks, 640))
    assert flipped.yaw == pytest.approx(-pose.yaw, abs=0.1)
    assert flipped.roll == pytest.approx(-pose.roll, abs=0.1)
    assert flipped.view == MIRRORED_VIEW[pose.view]


def test_three_quarter_faces_of_a_photo_and_its_mirror() -> None:
    """group_meeting.jpg: the woman on the left turns to the image's right (negative yaw, HR), the man on the
    right to its left (positive, HL); in the mirrored photo both turn the other way."""
    image = cv2.imread(str(PHOTOS / "group_meeting.jpg"))
    detector = MTCNNDetector()

    def yaws(picture: np.ndarray) -> list[float]:
        return [head_pose(d.landmarks).yaw for d in detector.detect_faces(picture) if d.box[2] >= 80]

    [left, *_, right] = yaws(image)
    [m_left, *_, m_right] = yaws(cv2.flip(image, 1))
    assert left < -15 and right > 15
    assert m_left < -15 and m_right > 15  # the man, now on the left, turns to the image's right
    assert abs(m_left + right) < 15 and abs(m_right + left) < 15  # the same faces, mirrored: opposite yaws

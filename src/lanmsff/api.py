"""The Python API: a trained checkpoint on photos, arrays and videos, with results as pandas tables.

    from lanmsff.api import Predictor

    predictor = Predictor.from_checkpoint("<run>/checkpoints/epoch_012.ckpt", device="auto")
    faces = predictor.predict_image("group.jpg")  # one row per face
    frames = predictor.predict_video("clip.mp4", stride=2)  # one row per face per analysed frame
    frontal = Predictor.from_checkpoint(path, views=["S"]).predict_image(image_array)

Each row holds the face's box (``x``, ``y``, ``w``, ``h`` in the image's pixels), the detector and its
score, five landmarks (``left_eye_x`` ... ``mouth_right_y``), the head pose (``yaw`` and ``roll`` in
degrees, from the landmarks) with the nearest KDEF view (``view``: FL, HL, S, HR, FR) and its probability
(``view_p``), one probability per class (``p_<class>``), the most probable class (``expression``,
``probability``) and how the probabilities were calibrated (``calibration``). Video rows add the frame,
its time, the face's track and the track's smoothed probabilities (``smoothed_<class>``), and
``expression`` is then the smoothed one. This is what ``predict.py`` writes to ``predictions.csv``.

Importing this module loads torch and the networks; ``import lanmsff`` alone does not.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lanmsff.data.detectors import LANDMARK_NAMES
from lanmsff.data.faces import UnreadableImage, read_image
from lanmsff.errors import UserError
from lanmsff.prediction import photos
from lanmsff.prediction import video as videos
from lanmsff.prediction.photos import VIEWS, FileResult, result_rows
from lanmsff.prediction.pipeline import ordered_table

__all__ = ["VIEWS", "Predictor"]

_POSE_COLUMNS = ("yaw", "roll", "view", "view_p")


class Predictor(photos.Predictor):
    """A trained classifier for the faces of photos, image arrays and videos; results as pandas tables.

    Make one with :meth:`from_checkpoint` (``device``, ``batch_size``, ``views``, ``tta`` and the
    preprocessing of the checkpoint's training; see :meth:`lanmsff.prediction.Predictor.from_checkpoint`).
    """

    def _columns(self, *, video: bool) -> list[str]:
        """The columns of a table without rows, in the order of :func:`lanmsff.prediction.pipeline.ordered_table`."""
        marks = [f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"]
        head = ["file", *(["frame", "time_s", "track"] if video else ["face"]), "x", "y", "w", "h"]
        probs = [f"p_{name}" for name in self.class_names]
        smoothed = [f"smoothed_{name}" for name in self.class_names] if video else []
        tail = ["expression", "probability", "calibration", *probs, *smoothed, *(["searched"] if video else [])]
        return [*head, "detector", "score", *marks, *_POSE_COLUMNS, *tail]

    def _table(self, rows: list[dict], *, video: bool) -> pd.DataFrame:
        if not rows:
            return pd.DataFrame(columns=self._columns(video=video))
        return ordered_table(rows).drop(columns="problem", errors="ignore")

    def predict_image(self, image: str | Path | np.ndarray, *, rgb: bool = False) -> pd.DataFrame:
        """The faces of one photo (a file path, or an array), one row per face (none: an empty table).

        Arrays are uint8 ``(H, W)`` gray, or ``(H, W, 3)`` in OpenCV's BGR order (``rgb=True``: RGB, as
        Pillow and matplotlib give them). Raises :class:`lanmsff.errors.UserError` for an unusable file.
        """
        if isinstance(image, np.ndarray):
            name, pixels = "<array>", _as_bgr(image, rgb=rgb)
        else:
            name = str(image)
            try:
                pixels = read_image(image, color=True)
            except UnreadableImage as err:
                raise UserError(f"{name}: {err}") from None
        result = FileResult(name, faces=self.faces(pixels))
        return self._table(result_rows(result, self.class_names, calibration=self.calibration), video=False)

    def predict_video(
        self,
        path: str | Path,
        *,
        stride: int = 1,
        smooth: float = 0.6,
        max_frames: int | None = None,
        detect_every: int = 1,
        annotated: str | Path | None = None,
        overlap: bool = True,
    ) -> pd.DataFrame:
        """The faces of a video, one row per face per analysed frame (every ``stride``-th), tracked and smoothed.

        ``smooth`` is the weight of the past in each track's moving average; ``detect_every=k`` searches for
        faces on every k-th analysed frame only and classifies the faces found last on the frames between (the
        ``searched`` column says which); ``annotated`` writes an MP4 with the boxes and smoothed expressions;
        ``overlap`` decodes and searches the next frames in a second thread while a frame's faces are classified
        (``False``: one thread).
        The table's ``attrs`` hold ``frames_read``, ``frames_with_faces`` and ``frames_per_s``. Raises
        :class:`lanmsff.errors.UserError` when the video cannot be read at all;
        a video whose decoding stops early keeps the frames read, with a warning saying where it stopped.
        """
        out = None if annotated is None else Path(annotated)
        options = videos.VideoOptions(
            stride=stride,
            smooth=smooth,
            max_frames=max_frames,
            annotated=out,
            detect_every=detect_every,
            overlap=overlap,
        )
        result = videos.predict_video(self, path, options)
        if result.unusable:
            raise UserError(f"{path}: {result.problem}")
        if result.problem:
            warnings.warn(f"{path}: {result.problem}", UserWarning, stacklevel=2)
        table = self._table(result.rows, video=True)
        table.attrs.update(
            frames_read=result.frames_read,
            frames_with_faces=result.frames_with_faces,
            frames_per_s=result.frames_read / result.seconds if result.seconds else None,
        )
        return table


def _as_bgr(image: np.ndarray, *, rgb: bool) -> np.ndarray:
    """A gray or 3-channel uint8 array as the detector's input (BGR), or a :class:`UserError`."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise UserError(
            f"predict_image: expected a uint8 array of shape (H, W) or (H, W, 3), got {image.dtype} {image.shape}"
        )
    return np.ascontiguousarray(image[..., ::-1]) if rgb and image.ndim == 3 else image

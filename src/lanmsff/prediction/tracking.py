"""Face identities across video frames (IoU matching) and smoothing of each face's probabilities over time.

:class:`IoUTracker` gives every detection of a frame the id of the track whose last box it overlaps
most (intersection over union at least ``min_iou``; greedy, best pairs first); a detection that
matches none starts a new track, and a track that has matched nothing for more than ``max_gap_s``
seconds ends. Each track keeps an exponential moving average of its class probabilities,
``smoothed = smooth * previous + (1 - smooth) * current`` per processed frame (``smooth=0``: none).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lanmsff.errors import ConfigError

Box = tuple[int, int, int, int]


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - w * h
    return w * h / union if union > 0 else 0.0


def check_smooth(smooth: float) -> None:
    """Raise :class:`ConfigError` unless ``smooth`` is a weight of the past in [0, 1)."""
    if not 0 <= smooth < 1:
        raise ConfigError(f"smooth={smooth} must be in [0, 1): the weight of the past (0: no smoothing)")


def ema(previous: np.ndarray | None, current: np.ndarray, smooth: float) -> np.ndarray:
    """One step of the exponential moving average (the first value is taken as it is)."""
    return current.copy() if previous is None else smooth * previous + (1 - smooth) * current


@dataclass
class Track:
    """One face followed through a video: its last box and time, smoothed probabilities, expressions seen."""

    id: int
    box: Box
    last_seen: float
    smoothed: np.ndarray | None = None
    expressions: Counter = field(default_factory=Counter)
    frames: int = 0

    def dominant(self) -> tuple[int, float]:
        """The class index seen most often (smoothed) and the share of the track's frames it has."""
        best, count = self.expressions.most_common(1)[0]
        return best, count / max(self.frames, 1)


class IoUTracker:
    """Keeps the identity of faces across frames by box overlap, and smooths their probabilities.

    Args:
        smooth: weight of the past in the moving average, in [0, 1) (0: no smoothing).
        min_iou: least overlap with a track's last box for a detection to continue it.
        max_gap_s: a track unmatched for longer than this (seconds of video) ends.
    """

    def __init__(self, *, smooth: float = 0.6, min_iou: float = 0.3, max_gap_s: float = 1.0) -> None:
        check_smooth(smooth)
        self.smooth, self.min_iou, self.max_gap_s = float(smooth), float(min_iou), float(max_gap_s)
        self.tracks: list[Track] = []  # every track ever started, in order of their ids
        self._active: list[Track] = []

    def _match(self, boxes: Sequence[Box]) -> dict[int, Track]:
        """Detection index -> active track, greedily by overlap (best first)."""
        pairs = sorted(
            ((iou(box, track.box), i, t) for i, box in enumerate(boxes) for t, track in enumerate(self._active)),
            key=lambda pair: -pair[0],
        )
        matched: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, i, t in pairs:
            if overlap < self.min_iou:
                break
            if i not in matched and t not in used:
                matched[i] = self._active[t]
                used.add(t)
        return matched

    def update(self, boxes: Sequence[Box], probs: np.ndarray, time_s: float) -> list[Track]:
        """The track of each detection of a frame at ``time_s`` (probabilities ``(N, classes)``), updated."""
        self._active = [t for t in self._active if time_s - t.last_seen <= self.max_gap_s]
        matched = self._match(boxes)
        out = []
        for i, box in enumerate(boxes):
            track = matched.get(i)
            if track is None:
                track = Track(len(self.tracks) + 1, box, time_s)
                self.tracks.append(track)
                self._active.append(track)
            track.box, track.last_seen = box, time_s
            track.smoothed = ema(track.smoothed, np.asarray(probs[i], dtype=np.float64), self.smooth)
            track.expressions[int(track.smoothed.argmax())] += 1
            track.frames += 1
            out.append(track)
        return out

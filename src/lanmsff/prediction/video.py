"""Faces in videos and webcam streams: decode with OpenCV, detect, track, smooth, and write what was seen.

Frames are decoded with OpenCV's FFmpeg backend (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``
and whatever else it reads) or read from a webcam. Every ``stride``-th frame is searched for faces
and classified (:class:`lanmsff.prediction.photos.Predictor`); :class:`~lanmsff.prediction.tracking.IoUTracker`
keeps each face's identity and smooths its probabilities. One row per (analysed frame, face): time in
seconds (``frame / fps``; for a webcam the time since its first frame), frame index, track id, box,
landmarks, probabilities, smoothed probabilities and the smoothed expression.

A file that cannot be used gets a reason, never an exception: zero bytes, not a video (or an
unknown container), no decodable frame (an unsupported codec), a webcam that does not open; a file
whose decoding stops before the frame count its header declares (truncated or damaged) keeps the
frames read and says at which frame decoding stopped. A video without a face gives no rows and no
error. Nothing here is timed in tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lanmsff.data.face_geometry import Detection
from lanmsff.errors import ConfigError
from lanmsff.plots import save_figure, track_probabilities_figure
from lanmsff.prediction.photos import Face, Predictor, draw_face, face_columns, face_label, probability_columns
from lanmsff.prediction.tracking import IoUTracker, Track, check_smooth
from lanmsff.utils.prefetch import Prefetched
from lanmsff.utils.progress import track as progress_bar

log = logging.getLogger(__name__)
DEFAULT_FPS = 30.0  # when a file or camera does not say
_MISSING_FRAMES_TOLERATED = 2  # declared frame counts of some containers are estimates


WEBCAM_PREFIX = "webcam:"  # a webcam's name in the outputs: webcam:<index>


def source_name(source: str | Path | int) -> str:
    """How a video file (its path) or a webcam (``webcam:<index>``) is named in the outputs."""
    return f"{WEBCAM_PREFIX}{source}" if isinstance(source, int) else str(source)


def is_webcam_name(name: str) -> bool:
    """Whether an output name (:func:`source_name`) is a webcam's."""
    return str(name).startswith(WEBCAM_PREFIX)


class VideoProblem(Exception):
    """A video that cannot be used at all; the message is the reason reported to the user."""


class LatestFrame:
    """The newest frame of a live source, so that a slower reader keeps up with the camera instead of lagging.

    A thread reads ``capture`` as fast as it delivers and keeps only the last frame; :meth:`take` returns it
    (waiting for the next one when it was already taken). Frames replaced before anyone took them are counted
    in :attr:`dropped`; :attr:`delivered` counts every frame the source gave.
    """

    def __init__(self, capture: Any) -> None:
        self.capture = capture
        self.delivered = self.dropped = 0
        self._frame: np.ndarray | None = None
        self._ended = self._stop = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._grab, name="webcam-grabber", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        while not self._stop:
            ok, frame = self.capture.read()
            with self._changed:
                if not ok or frame is None:
                    self._ended = True
                else:
                    self.dropped += self._frame is not None
                    self._frame, self.delivered = frame, self.delivered + 1
                self._changed.notify_all()
                if self._ended:
                    return

    def take(self) -> tuple[int, np.ndarray] | None:
        """``(number of the frame among those delivered, counting from 0, frame)``; ``None`` once the source ends."""
        with self._changed:
            self._changed.wait_for(lambda: self._frame is not None or self._ended)
            if self._frame is None:
                return None
            frame, self._frame = self._frame, None
            return self.delivered - 1, frame

    def close(self) -> None:
        """Stop the reading thread (after the frame it is reading)."""
        self._stop = True
        self._thread.join(timeout=5)


class VideoReader:
    """The frames of a video file or a webcam, and what stopped the decoding.

    Iterating yields ``(frame index, time in seconds, BGR frame)``; afterwards :attr:`frames_read`
    counts them and :attr:`problem` says why decoding stopped early (``None`` when it did not).
    A webcam is read through :class:`LatestFrame`: when analysing is slower than the camera, frames are
    dropped (counted in :attr:`frames_dropped`; the indices of the frames yielded skip them) rather than
    queued. ``capture`` replaces the opened source (any object with OpenCV's ``read``, ``get``, ``release``).
    Raises :class:`VideoProblem` when nothing can be opened.
    """

    def __init__(self, source: str | Path | int, *, max_frames: int | None = None, capture: Any = None) -> None:
        self.webcam = isinstance(source, int)
        self.name = source_name(source)
        self.max_frames = max_frames
        self.frames_dropped = 0
        if capture is None:
            capture = _open_webcam(source) if isinstance(source, int) else _open_file(Path(source))
        self.capture = capture
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared_frames = int(count) if not self.webcam and count and np.isfinite(count) and count > 0 else None
        self.frames_read = 0
        self.problem: str | None = None

    @property
    def expected_frames(self) -> int | None:
        """How many frames the iteration should give (for the progress bar), when known."""
        limits = [n for n in (self.declared_frames, self.max_frames) if n is not None]
        return min(limits) if limits else None

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        if self.webcam:
            yield from self._live()
            return
        start = time.monotonic()
        try:
            while self.max_frames is None or self.frames_read < self.max_frames:
                ok, frame = self.capture.read()
                if not ok or frame is None:
                    self.problem = self._stop_reason()
                    return
                now = time.monotonic() - start if self.webcam else self.frames_read / self.fps
                index, self.frames_read = self.frames_read, self.frames_read + 1
                yield index, now, frame
        finally:
            self.capture.release()

    def _live(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """The newest frame of a webcam each time one is asked for (:class:`LatestFrame`)."""
        start = time.monotonic()
        latest = LatestFrame(self.capture)
        try:
            while self.max_frames is None or self.frames_read < self.max_frames:
                taken = latest.take()
                if taken is None:
                    self.problem = self._stop_reason()
                    return
                self.frames_read += 1
                self.frames_dropped = latest.dropped
                yield taken[0], time.monotonic() - start, taken[1]
        finally:
            latest.close()
            self.capture.release()

    def _stop_reason(self) -> str | None:
        """Why the frames ended at :attr:`frames_read`, or ``None`` when that was the end of the file."""
        if self.frames_read == 0:
            if self.webcam:
                return f"{self.name} opened but delivered no frame"
            return "no frame could be decoded (an unsupported codec, or a damaged file)"
        if self.webcam:
            return f"{self.name} stopped delivering frames after frame {self.frames_read - 1}"
        if self.declared_frames and self.frames_read < self.declared_frames - _MISSING_FRAMES_TOLERATED:
            return (
                f"decoding stopped at frame {self.frames_read} of the {self.declared_frames} its header declares "
                f"(truncated or damaged file); the {self.frames_read} frames before it are kept"
            )
        return None


def container_of(head: bytes) -> str | None:
    """The video container that the first bytes of a file announce (``None``: none known)."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[4:8] == b"ftyp":
        return "MP4/MOV"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "QuickTime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    if head[:4] == b"OggS":
        return "Ogg"
    return None


def _open_file(path: Path) -> cv2.VideoCapture:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise VideoProblem(f"cannot be read ({err.strerror or err})") from None
    if not head:
        raise VideoProblem("zero-byte file")
    backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
    capture = cv2.VideoCapture(str(path), backend)
    if capture.isOpened():
        return capture
    container = container_of(head)
    if container is None:
        raise VideoProblem("not a video (OpenCV cannot open it, and it starts with no known video container header)")
    raise VideoProblem(
        f"an {container} file that OpenCV cannot open: an unsupported codec, or a damaged or truncated file "
        "(an MP4 or MOV cut short loses its index)"
    )


def _open_webcam(index: int) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise VideoProblem(f"webcam {index} could not be opened (no camera with that index, or it is in use)")
    return capture


class AnnotatedVideo:
    """An H.264 MP4 (what browsers play) written next to its final name, then moved there atomically by :meth:`close`.

    Frames are written by OpenCV (MPEG-4 Part 2) into a temporary file, which :meth:`close` encodes to H.264
    (``yuv420p``, the frame rate kept) with the FFmpeg of the ``imageio-ffmpeg`` wheel, copying in the audio of
    ``audio_from`` (the input video) when it has any. Without ``imageio-ffmpeg`` the MPEG-4 Part 2 file is kept,
    with a warning (most browsers do not play it).
    """

    def __init__(self, path: Path, fps: float, *, audio_from: Path | None = None) -> None:
        self.path, self.fps, self.audio_from = path, fps, audio_from
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_dir = Path(tempfile.mkdtemp(prefix=".annotating-", dir=path.parent))
        self._tmp = self._tmp_dir / path.name
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            height, width = frame.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self._writer.isOpened():
                raise VideoProblem(f"cannot write the annotated video {self.path} (no MP4 encoder in this OpenCV)")
        self._writer.write(frame)

    def close(self) -> Path | None:
        """Finish the file and put it in place; ``None`` when no frame was written."""
        try:
            if self._writer is None:
                return None
            self._writer.release()
            finished = self._h264() or self._tmp
            os.replace(finished, self.path)  # same folder: a rename puts the finished file in place
            return self.path
        finally:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def _h264(self) -> Path | None:
        """The written file encoded to H.264 with the input's audio, or ``None`` (with a warning) when it cannot be."""
        try:
            import imageio_ffmpeg
        except ImportError:
            log.warning("%s: kept as MPEG-4 Part 2 (pip install imageio-ffmpeg for H.264)", self.path)
            return None
        out = self._tmp_dir / f"h264-{self.path.name}"
        command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(self._tmp)]
        command += ["-i", str(self.audio_from)] if self.audio_from else []
        command += ["-map", "0:v:0", *(["-map", "1:a?", "-c:a", "aac"] if self.audio_from else [])]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23"]
        command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
        done = subprocess.run([*command, str(out)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log.warning("%s: kept as MPEG-4 Part 2, H.264 encoding failed: %s", self.path, done.stderr.strip()[-500:])
            return None
        return out


@dataclass
class VideoResult:
    """What one video gave: rows, counts, tracks, and the reason decoding stopped early (if it did)."""

    file: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    frames_read: int = 0
    frames_with_faces: int = 0
    tracks: list[Track] = field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0
    annotated: Path | None = None
    plot: Path | None = None
    frames_dropped: int = 0  # webcams: frames skipped to keep up with the camera

    @property
    def faces(self) -> int:
        return len(self.rows)

    @property
    def unusable(self) -> bool:
        """Nothing could be read at all."""
        return self.frames_read == 0 and self.problem is not None


def video_row(
    file: str,
    frame: int,
    time_s: float,
    face: Face,
    track: Track,
    class_names: Sequence[str],
    *,
    calibration: str = "none",
) -> dict[str, Any]:
    """The output row of one face in one frame: raw and smoothed probabilities, the smoothed expression."""
    smoothed = track.smoothed if track.smoothed is not None else face.probs
    best = int(np.argmax(smoothed))
    return {
        "file": file,
        "frame": frame,
        "time_s": round(time_s, 4),
        "track": track.id,
        **face_columns(face, class_names),
        "expression": class_names[best],
        "probability": round(float(smoothed[best]), 6),
        "calibration": calibration,
        **probability_columns("smoothed_", smoothed, class_names),
        "problem": None,
    }


@dataclass
class VideoOptions:
    """How videos are read: analyse every ``stride``-th frame, smoothing weight, frame limit, outputs."""

    stride: int = 1
    smooth: float = 0.6
    max_frames: int | None = None
    annotated: Path | None = None  # the annotated MP4 to write (None: none)
    plot: Path | None = None  # the PNG of each track's probabilities over time (None: none)
    # search for faces on every detect_every-th analysed frame; in between, the faces found last are classified
    # where they were (their boxes held); 1: search every analysed frame
    detect_every: int = 1
    # decode and search the next frames in a second thread while this frame's faces are classified (the two
    # halves release the GIL, so on two cores they run side by side); False: one thread does everything
    overlap: bool = True

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ConfigError(f"stride={self.stride} must be at least 1 (1: every frame)")
        if self.detect_every < 1:
            raise ConfigError(f"detect_every={self.detect_every} must be at least 1 (1: search every frame)")
        check_smooth(self.smooth)
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames={self.max_frames} must be at least 1 (null: no limit)")


ROWS_PER_WRITE = 30  # analysed frames whose rows go to ``sink`` together


def predict_video(
    predictor: Predictor,
    source: str | Path | int,
    options: VideoOptions,
    *,
    sink: Callable[[list[dict[str, Any]]], None] | None = None,
) -> VideoResult:
    """Read, track and classify one video (a path or a webcam index); problems are reported, not raised.

    ``sink`` gets the rows as they come, those of every :data:`ROWS_PER_WRITE` analysed frames together and the
    rest at the end, also when an error stops the video (then raised again), so that a crash keeps them.
    """
    name = source_name(source)
    start = time.perf_counter()
    try:
        reader = VideoReader(source, max_frames=options.max_frames)
    except VideoProblem as err:
        return VideoResult(name, problem=str(err))
    result = VideoResult(reader.name)
    tracker = IoUTracker(smooth=options.smooth)
    series: dict[int, tuple[list[float], list[np.ndarray]]] = defaultdict(lambda: ([], []))
    audio = None if isinstance(source, int) else Path(source)
    writer = AnnotatedVideo(options.annotated, reader.fps, audio_from=audio) if options.annotated else None
    shown: list[tuple[Face, Track, np.ndarray]] = []
    label = f"{Path(reader.name).name}: frames"
    searched = searched_frames(reader, predictor, options)
    # a webcam's frames wait in the queue as little as possible: the output stays in step with the camera
    ahead = Prefetched(searched, depth=1 if reader.webcam else 4, name="video-search") if options.overlap else None
    frames = progress_bar(ahead or searched, total=reader.expected_frames, description=label, rate="frames")
    written = analysed = 0
    try:
        for frame in frames:
            if frame.detections is not None:
                shown = _analyse(predictor, tracker, result, series, frame)
                analysed += 1
                if sink is not None and analysed % ROWS_PER_WRITE == 0:
                    sink(result.rows[written:])
                    written = len(result.rows)
            if writer is not None:
                writer.write(_annotated_frame(frame.image, shown, predictor.class_names))
    except KeyboardInterrupt:
        if not reader.webcam:
            raise
        log.info("%s: stopped with Ctrl+C after %d frames", reader.name, reader.frames_read)
    finally:
        if ahead is not None:
            ahead.close()  # the reader's counts below are final once its thread has stopped
        else:
            searched.close()
        if sink is not None and written < len(result.rows):
            sink(result.rows[written:])
        result.annotated = writer.close() if writer is not None else None
    result.frames_read, result.problem = reader.frames_read, reader.problem
    result.frames_dropped = reader.frames_dropped
    result.tracks, result.seconds = tracker.tracks, time.perf_counter() - start
    if options.plot is not None and series:
        figure = track_probabilities_figure(series, predictor.class_names, title=Path(reader.name).name)
        result.plot = save_figure(figure, options.plot)
    return result


@dataclass
class SearchedFrame:
    """A decoded frame and, when it is analysed, the faces to classify in it."""

    index: int
    time_s: float
    image: np.ndarray
    detections: list[Detection] | None = None  # None: not analysed (only drawn, with stride > 1)
    searched: bool = False  # the detector searched this frame (else the detections are those found last)


def searched_frames(
    frames: Iterable[tuple[int, float, np.ndarray]], predictor: Predictor, options: VideoOptions
) -> Iterator[SearchedFrame]:
    """Every frame, with the faces to classify on every ``stride``-th: found by searching it on every
    ``detect_every``-th of those, the faces found last on the others."""
    held: list[Detection] = []
    analysed = 0
    for index, time_s, image in frames:
        if index % options.stride:
            yield SearchedFrame(index, time_s, image)
            continue
        search = analysed % options.detect_every == 0
        if search:
            held = predictor.detect(image, frame=True)
        analysed += 1
        yield SearchedFrame(index, time_s, image, held, search)


def _analyse(
    predictor: Predictor,
    tracker: IoUTracker,
    result: VideoResult,
    series: dict[int, tuple[list[float], list[np.ndarray]]],
    frame: SearchedFrame,
) -> list[tuple[Face, Track, np.ndarray]]:
    """Classify and track the faces of one analysed frame; add its rows. Returns what to draw."""
    faces = predictor.faces(frame.image, frame=True, detections=frame.detections)
    tracks = tracker.update([f.box for f in faces], np.array([f.probs for f in faces]), frame.time_s)
    result.frames_with_faces += bool(faces)
    shown = []
    for face, track in zip(faces, tracks, strict=True):
        row = video_row(
            result.file,
            frame.index,
            frame.time_s,
            face,
            track,
            predictor.class_names,
            calibration=predictor.calibration,
        )
        result.rows.append({**row, "searched": frame.searched})
        times, values = series[track.id]
        times.append(frame.time_s)
        values.append(track.smoothed)
        shown.append((face, track, track.smoothed))
    return shown


def _annotated_frame(
    frame: np.ndarray, shown: Sequence[tuple[Face, Track, np.ndarray]], class_names: Sequence[str]
) -> np.ndarray:
    """A copy of ``frame`` with the box, track id and smoothed expression of the faces last analysed."""
    out = frame.copy()
    for face, track, smoothed in shown:
        draw_face(out, face, f"#{track.id} {face_label(smoothed, class_names)}")
    return out


def summary_line(result: VideoResult, class_names: Sequence[str], *, stride: int = 1) -> str:
    """One line about a video: frames read, frames with faces, tracks with their dominant expression."""
    name = result.file if is_webcam_name(result.file) else Path(result.file).name
    if result.unusable:
        return f"{name}: {result.problem}"
    analysed = f" (1 in {stride} analysed)" if stride > 1 else ""
    tracks = [f"{t.id}: {class_names[t.dominant()[0]]} {t.dominant()[1]:.0%}" for t in result.tracks[:10]]
    more = f", +{len(result.tracks) - 10} more" if len(result.tracks) > 10 else ""
    listed = f" ({'; '.join(tracks)}{more})" if tracks else ""
    noun = "track" if len(result.tracks) == 1 else "tracks"
    rate = result.frames_read / result.seconds if result.seconds > 0 else 0.0
    line = (
        f"{name}: {result.frames_read} frames read{analysed}, {result.frames_with_faces} with faces, "
        f"{len(result.tracks)} {noun}{listed}; {rate:.1f} frames/s"
    )
    if result.frames_dropped:
        line += f"; {result.frames_dropped} camera frames dropped to keep up (analysing is slower than the camera)"
    return f"{line}; {result.problem}" if result.problem else line

"""Video input: clips made here from a real photo (scikit-image's astronaut, public domain), tracking,
smoothing, the annotated MP4, bad files, and predict.py on a folder mixing photos and videos.

The clips are small (160x120, 10 frames/s) so that a random-weight network and the CNN detector go
through them in seconds; nothing is timed.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from lanmsff.data.detectors import blazeface_available
from lanmsff.errors import ConfigError
from lanmsff.inference import optimize
from lanmsff.models.lanmsff import LANMSFF
from lanmsff.prediction import (
    IoUTracker,
    Predictor,
    VideoOptions,
    VideoReader,
    find_inputs,
    is_video,
    predict_inputs,
    predict_video,
    webcam_index,
)
from lanmsff.prediction import video as video_module
from lanmsff.prediction.pipeline import RowLog
from lanmsff.prediction.tracking import ema
from lanmsff.prediction.video import ROWS_PER_WRITE, VideoResult, summary_line
from lanmsff.utils.prefetch import Prefetched

from .conftest import run_script

EXPRESSIONS = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
FPS, SIZE, FRAMES = 10, (160, 120), 60


def clip_frames(frames: int = FRAMES, *, face_until: int | None = None) -> list[np.ndarray]:
    """The astronaut (face ~45 px) panned and rotated, with a jitter of a pixel or two; blank after ``face_until``."""
    from skimage import data

    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (256, 256), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    out = []
    for i in range(frames):
        if face_until is not None and i >= face_until:
            out.append(np.full((SIZE[1], SIZE[0], 3), (60 + i, 90, 120), np.uint8))
            continue
        matrix = cv2.getRotationMatrix2D((112, 58), 12 * np.sin(i / 6), 1.0)
        matrix[:, 2] += (80 - 112 + 20 * np.sin(i / 10) + rng.normal(0, 1.5), 60 - 58 + rng.normal(0, 1.5))
        out.append(cv2.warpAffine(photo, matrix, SIZE, borderMode=cv2.BORDER_REPLICATE))
    return out


def write_clip(path: Path, frames: list[np.ndarray], fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, SIZE)
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def decoded_frames(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    avi = write_clip(folder / "panned.avi", clip_frames(), "MJPG")
    data = avi.read_bytes()
    truncated = folder / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    mp4 = write_clip(folder / "panned.mp4", clip_frames())
    cut_mp4 = folder / "cut.mp4"
    cut_mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])  # loses its index (moov atom)
    codec = folder / "codec.avi"
    codec.write_bytes(data.replace(b"MJPG", b"ZZZZ"))  # a container whose codec no decoder knows
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mov").write_text("not a video\n" * 20)
    return {
        "mp4": mp4,
        "avi": avi,
        "truncated": truncated,
        "cut_mp4": cut_mp4,
        "codec": codec,
        "empty": folder / "empty.mp4",
        "text": folder / "notes.mov",
        "half": write_clip(folder / "half.mp4", clip_frames(face_until=FRAMES // 2)),
    }


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    """A random-weight network: the pipeline runs the same, the probabilities mean nothing."""
    torch.manual_seed(0)
    net = LANMSFF(num_classes=7, widths=[12, 12, 12, 12]).eval()
    return Predictor(optimize(net, precision="fp32"), EXPRESSIONS, 64)


@pytest.fixture(scope="module")
def panned(predictor: Predictor, clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("panned_out")
    options = VideoOptions(annotated=out / "annotated.mp4", plot=out / "expressions.png")
    return {"result": predict_video(predictor, clips["mp4"], options), "out": out}


def test_one_track_with_a_row_per_frame_and_the_right_times(panned: dict) -> None:
    result = panned["result"]
    assert result.problem is None and result.frames_read == FRAMES == result.frames_with_faces
    rows = pd.DataFrame(result.rows)
    assert len(rows) == FRAMES and rows.frame.tolist() == list(range(FRAMES))
    assert np.allclose(rows.time_s, rows.frame / FPS) and rows.time_s.iloc[-1] == pytest.approx(5.9)
    assert set(rows.track) == {1} and len(result.tracks) == 1 and result.tracks[0].frames == FRAMES
    assert (rows.detector == "cnn").all() and rows.left_eye_x.notna().all()
    assert np.allclose(rows[[f"p_{e}" for e in EXPRESSIONS]].sum(axis=1), 1, atol=1e-4)
    assert set(rows.expression) <= set(EXPRESSIONS)


def test_the_annotated_mp4_has_every_frame_and_the_plot_exists(panned: dict) -> None:
    result = panned["result"]
    assert result.annotated == panned["out"] / "annotated.mp4" and decoded_frames(result.annotated) == FRAMES
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(panned["out"].glob(".annotating-*"))  # the temporary file is gone


def test_the_annotated_video_is_h264_with_the_frame_rate_and_audio_of_the_input(
    predictor: Predictor, clips: dict, tmp_path: Path
) -> None:
    """Read back by FFmpeg (imageio-ffmpeg's, a second decoder next to OpenCV): H.264, every frame, the input's
    frame rate, and the input's audio track."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with_audio = tmp_path / "with_audio.mp4"
    tone = ["-f", "lavfi", "-i", "sine=frequency=440:duration=6", "-map", "0:v", "-map", "1:a", "-c:v", "copy"]
    done = subprocess.run(
        [ffmpeg, "-y", "-loglevel", "error", "-i", str(clips["mp4"]), *tone, "-c:a", "aac", str(with_audio)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    out = tmp_path / "annotated.mp4"
    result = predict_video(predictor, with_audio, VideoOptions(annotated=out, max_frames=FRAMES))
    assert result.annotated == out
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    assert meta["codec"].startswith("h264") and meta["fps"] == pytest.approx(FPS)
    assert sum(1 for _ in reader) == FRAMES == decoded_frames(out)
    probe = subprocess.run([ffmpeg, "-hide_banner", "-i", str(out)], capture_output=True, text=True)
    assert "Audio: aac" in probe.stderr and "yuv420p" in probe.stderr


def test_smoothing_reduces_the_frame_to_frame_change(panned: dict, predictor: Predictor, clips: dict) -> None:
    rows = pd.DataFrame(panned["result"].rows)
    raw = rows[[f"p_{e}" for e in EXPRESSIONS]].to_numpy()
    smoothed = rows[[f"smoothed_{e}" for e in EXPRESSIONS]].to_numpy()
    change = np.abs(np.diff(raw, axis=0)).sum(axis=1).mean()
    assert np.abs(np.diff(smoothed, axis=0)).sum(axis=1).mean() < 0.7 * change
    none = pd.DataFrame(predict_video(predictor, clips["avi"], VideoOptions(smooth=0, max_frames=8)).rows)
    assert np.allclose(none[[f"smoothed_{e}" for e in EXPRESSIONS]], none[[f"p_{e}" for e in EXPRESSIONS]])


def test_frames_without_a_face_give_no_rows(predictor: Predictor, clips: dict) -> None:
    result = predict_video(predictor, clips["half"], VideoOptions())
    assert result.problem is None and result.frames_read == FRAMES and result.frames_with_faces == FRAMES // 2
    assert sorted({row["frame"] for row in result.rows}) == list(range(FRAMES // 2))


def test_stride_analyses_every_nth_frame_and_still_annotates_all(
    predictor: Predictor, clips: dict, tmp_path: Path
) -> None:
    result = predict_video(predictor, clips["avi"], VideoOptions(stride=5, annotated=tmp_path / "a.mp4"))
    assert [row["frame"] for row in result.rows] == list(range(0, FRAMES, 5))
    assert len(result.tracks) == 1 and decoded_frames(tmp_path / "a.mp4") == FRAMES


def test_detect_every_classifies_every_frame_at_the_boxes_found_last(predictor: Predictor, clips: dict) -> None:
    rows = pd.DataFrame(predict_video(predictor, clips["half"], VideoOptions(detect_every=4)).rows)
    # the face leaves at frame 30; its box is held (and classified) until the search at frame 32 finds nothing
    assert FRAMES // 2 == 30 and rows.frame.tolist() == list(range(32))
    assert rows.searched.tolist() == [frame % 4 == 0 for frame in range(32)]
    for _, group in rows.groupby(rows.frame // 4):  # between two searches the box stays where it was found
        assert group[["x", "y", "w", "h"]].nunique().max() == 1
    assert rows.track.nunique() == 1
    with pytest.raises(ConfigError, match="detect_every=0"):
        VideoOptions(detect_every=0)


class TimedCamera:
    """A simulated webcam: ``frames`` frames, one every ``period`` seconds (``read`` blocks until it is due)."""

    def __init__(self, frames: int, period: float) -> None:
        self.frames, self.period, self.given = frames, period, 0
        self.next_due = time.monotonic()

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.given == self.frames:
            return False, None
        self.next_due += self.period
        time.sleep(max(0.0, self.next_due - time.monotonic()))
        self.given += 1
        return True, np.full((24, 32, 3), self.given, np.uint8)  # the frame's number in its pixels

    def get(self, prop: int) -> float:
        return 1 / self.period if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


def test_a_slow_reader_of_a_webcam_gets_the_newest_frames_and_counts_the_dropped_ones() -> None:
    """Analysing takes five camera frames' time: the reader skips ahead instead of falling behind the camera."""
    camera = TimedCamera(frames=60, period=0.004)
    reader = VideoReader(0, capture=camera)
    seen = []
    for index, _, frame in reader:
        assert int(frame[0, 0, 0]) == index + 1  # the index is the frame's place among those the camera gave
        seen.append(index)
        time.sleep(5 * camera.period)
    assert seen == sorted(set(seen)) and seen[-1] >= 55  # in order, and up to the camera's last frames
    assert reader.frames_dropped > 0 and reader.frames_read + reader.frames_dropped <= camera.given == 60
    assert reader.frames_read == len(seen) < 60
    assert reader.problem == "webcam:0 stopped delivering frames after frame " + str(len(seen) - 1)


def test_the_summary_says_when_webcam_frames_were_dropped(predictor: Predictor) -> None:
    result = VideoResult("webcam:0", frames_read=10, frames_dropped=31, seconds=1.0)
    assert "31 camera frames dropped to keep up" in summary_line(result, predictor.class_names)


def test_a_truncated_file_says_where_decoding_stopped(predictor: Predictor, clips: dict) -> None:
    reader = VideoReader(clips["truncated"])
    frames = sum(1 for _ in reader)
    assert 10 < frames < FRAMES and reader.frames_read == frames
    assert f"decoding stopped at frame {frames} of the {FRAMES} its header declares" in reader.problem
    result = predict_video(predictor, clips["truncated"], VideoOptions())
    assert result.frames_read == frames and len(result.rows) == frames  # what was read is kept
    assert result.problem == reader.problem and not result.unusable


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "zero-byte file"),
        ("text", "not a video"),
        ("cut_mp4", "an MP4/MOV file that OpenCV cannot open"),
        ("codec", "an AVI file that OpenCV cannot open: an unsupported codec"),
    ],
)
def test_bad_videos_get_a_reason(predictor: Predictor, clips: dict, name: str, reason: str) -> None:
    result = predict_video(predictor, clips[name], VideoOptions())
    assert result.unusable and reason in result.problem and result.rows == []


def test_a_webcam_that_does_not_open_gets_a_reason(predictor: Predictor) -> None:
    result = predict_video(predictor, 57, VideoOptions())
    assert result.unusable and result.file == "webcam:57" and "webcam 57 could not be opened" in result.problem


def test_tracker_keeps_identities_and_ends_lost_tracks() -> None:
    tracker = IoUTracker(smooth=0.5, max_gap_s=0.5)
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    for step in range(5):  # two faces moving right, listed in either order
        boxes = [(10 + 4 * step, 10, 40, 40), (200 + 4 * step, 10, 40, 40)]
        order = [1, 0] if step % 2 else [0, 1]
        tracks = tracker.update([boxes[i] for i in order], probs[order], step * 0.1)
        assert [t.id for t in tracks] == [[1, 2][i] for i in order]
    assert [t.id for t in tracker.update([(500, 300, 40, 40)], probs[:1], 0.5)] == [3]  # somewhere else: new
    assert [t.id for t in tracker.update([(30, 10, 40, 40)], probs[:1], 1.2)] == [4]  # track 1 ended (0.8 s gap)
    first = tracker.tracks[0]
    assert first.frames == 5 and first.dominant() == (0, 1.0)
    with pytest.raises(ConfigError, match="smooth=1"):
        IoUTracker(smooth=1)


def test_moving_average() -> None:
    first = ema(None, np.array([1.0, 0.0]), 0.6)
    assert np.allclose(first, [1, 0]) and np.allclose(ema(first, np.array([0.0, 1.0]), 0.6), [0.6, 0.4])
    assert np.allclose(ema(first, np.array([0.0, 1.0]), 0.0), [0, 1])


def test_a_rerun_in_the_same_folder_skips_what_is_finished(
    predictor: Predictor, clips: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after the photo (the video never finished) is resumed: the photo is not done again, the
    video is, and the outputs hold both; a line cut short by the crash is dropped."""
    photo = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(photo), clip_frames(1)[0])
    out = tmp_path / "out"
    first = predict_inputs(predictor, [photo], out, report=lambda line: None)
    assert first["files_with_faces"] == 1
    with open(out / "predictions.jsonl", "a", encoding="utf-8") as f:
        f.write('{"file": "' + str(clips["avi"]) + '", "frame": 0, "tra')  # the crash, mid-line
    calls: list[str] = []
    original = predictor.predict_file
    monkeypatch.setattr(predictor, "predict_file", lambda path: calls.append(str(path)) or original(path))
    lines: list[str] = []
    second = predict_inputs(predictor, [photo, clips["avi"]], out, report=lines.append)
    assert calls == [] and lines[0] == f"1 files already done in {out / 'predictions.jsonl'} (skipped)"
    assert (second["files"], second["files_with_faces"], second["faces"]) == (2, 2, 1 + FRAMES)
    table = pd.read_csv(out / "predictions.csv")
    assert table.file.value_counts().to_dict() == {str(clips["avi"]): FRAMES, str(photo): 1}
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == FRAMES + 1


def test_a_crash_mid_video_keeps_its_rows_so_far_and_the_rerun_does_it_again(
    predictor: Predictor, clips: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows are written every ROWS_PER_WRITE analysed frames: a crash at frame 45 leaves those of the first
    batch on disk; the video is not finished, so a rerun drops them and does it again, once."""
    out, original, calls = tmp_path / "out", predictor.faces, []

    def crash_at_45(*args: object, **kwargs: object) -> list:
        calls.append(1)
        if len(calls) > 45:
            raise MemoryError("killed mid-video")
        return original(*args, **kwargs)

    monkeypatch.setattr(predictor, "faces", crash_at_45)
    with pytest.raises(MemoryError):
        predict_inputs(predictor, [clips["avi"]], out, report=lambda line: None)
    kept = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert ROWS_PER_WRITE == 30 and len(kept) == 45 // ROWS_PER_WRITE * ROWS_PER_WRITE + 15  # flushed as it stopped
    assert (out / "finished_files.txt").read_text(encoding="utf-8") == ""
    monkeypatch.setattr(predictor, "faces", original)
    second = predict_inputs(predictor, [clips["avi"]], out, report=lambda line: None)
    assert (second["files_with_faces"], second["faces"]) == (1, FRAMES)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["frame"] for row in rows] == list(range(FRAMES))
    assert (out / "finished_files.txt").read_text(encoding="utf-8") == f"{clips['avi']}\n"


def test_an_output_folder_without_the_finished_list_counts_every_file_with_rows_as_finished(tmp_path: Path) -> None:
    rows = [{"file": "a.mp4", "frame": 0, "problem": None}, {"file": "webcam:0", "frame": 0, "problem": None}]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    log = RowLog(tmp_path)
    assert log.finished == {"a.mp4"} and log.rows == rows and log.outcome("a.mp4") == ("files_with_faces", 1)


def test_inputs_mix_images_videos_and_a_webcam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.jpg", "b.MP4", "c.webm", "d.mkv", "e.mov", "f.avi", "g.png"):
        (tmp_path / name).write_bytes(b"x")
    files = find_inputs(tmp_path)
    assert [p.name for p in files if is_video(p)] == ["b.MP4", "c.webm", "d.mkv", "e.mov", "f.avi"]
    monkeypatch.chdir(tmp_path)
    assert webcam_index(0) == 0 and webcam_index("1") == 1 and webcam_index("b.MP4") is None
    (tmp_path / "2").write_bytes(b"x")  # a file called 2 is a file
    assert webcam_index("2") is None and webcam_index(True) is None and webcam_index(-1) is None


# ----------------------------------------------------------------------------- predict.py
@pytest.mark.slow
def test_predict_py_on_a_folder_of_photos_and_videos(trained_checkpoint: Path, clips: dict, tmp_path: Path) -> None:
    from skimage import data

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.jpg"), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    for name in ("mp4", "truncated", "half", "empty", "codec"):
        (folder / clips[name].name).write_bytes(clips[name].read_bytes())
    out = tmp_path / "out"
    args = (f"ckpt_path={trained_checkpoint}", f"input={folder}", f"output={out}", "save_annotated=true")
    result = run_script("predict.py", *args, cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 6, lines  # one per video, then the counts
    by_video = {line.split(":")[0]: line for line in lines[:-1]}
    assert f"{FRAMES} frames read, {FRAMES} with faces, 1 track (1: " in by_video["panned.mp4"]
    assert "decoding stopped at frame" in by_video["truncated.avi"]
    assert "zero-byte file" in by_video["empty.mp4"] and "unsupported codec" in by_video["codec.avi"]
    assert lines[-1].startswith("6 files: 4 with faces") and "0 without a face, 2 unusable" in lines[-1]
    table = pd.read_csv(out / "predictions.csv")
    video = table[table.file.str.endswith("panned.mp4")]
    assert len(video) == FRAMES and video.track.eq(1).all() and np.allclose(video.time_s, video.frame / FPS)
    assert table[table.file.str.endswith("astronaut.jpg")].frame.isna().all()
    assert decoded_frames(out / "annotated" / "panned.mp4") == FRAMES and (out / "annotated" / "astronaut.jpg").exists()
    assert (out / "panned_expressions.png").exists() and (out / "half_expressions.png").exists()
    lines_json = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sum(1 for row in lines_json if row["file"].endswith("panned.mp4")) == FRAMES


@pytest.mark.slow
def test_predict_py_webcam_that_does_not_open(trained_checkpoint: Path, tmp_path: Path) -> None:
    result = run_script("predict.py", f"ckpt_path={trained_checkpoint}", "input=57", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    camera, counts = result.stdout.splitlines()
    assert camera == "webcam:57: webcam 57 could not be opened (no camera with that index, or it is in use)"
    assert counts.startswith("1 files: 0 with faces") and "no face was classified" in result.stderr


@pytest.mark.slow
def test_predict_py_video_settings_are_checked(trained_checkpoint: Path, clips: dict, tmp_path: Path) -> None:
    settings = {
        "stride=0": "stride=0 must be at least 1",
        "smooth=1.5": "smooth=1.5 must be in [0, 1)",
        "tta=rotate": "tta='rotate' is not valid",
        "detector=dlib": "detector='dlib' is not valid; allowed values: 'cnn', 'haar', 'blazeface'",
        "min_face=0.05": "min_face=0.05 is in pixels",
    }
    for setting, message in settings.items():
        args = (f"ckpt_path={trained_checkpoint}", f"input={clips['mp4']}", setting)
        result = run_script("predict.py", *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, setting


# ----------------------------------------------------------------------------- overlap: search in a second thread
def test_overlap_gives_the_rows_of_one_thread(predictor: Predictor, clips: dict) -> None:
    """Searching the next frames in a second thread changes nothing in what is found, classified and tracked."""
    runs = {
        overlap: pd.DataFrame(
            predict_video(predictor, clips["half"], VideoOptions(stride=2, detect_every=3, overlap=overlap)).rows
        )
        for overlap in (True, False)
    }
    together, alone = runs[True], runs[False]
    # the face leaves at frame 30, where a search finds nothing
    assert together.frame.tolist() == alone.frame.tolist() == list(range(0, 30, 2))
    assert together.searched.tolist() == alone.searched.tolist() == [i % 3 == 0 for i in range(15)]
    numbers = [c for c in alone if c.startswith(("p_", "smoothed_")) or c in ("x", "y", "w", "h", "track", "yaw")]
    np.testing.assert_allclose(together[numbers].to_numpy(float), alone[numbers].to_numpy(float), atol=1e-5)


def test_prefetched_keeps_the_order_and_raises_the_producers_error() -> None:
    def items():
        yield from range(5)
        raise OSError("disk gone after 5")

    got = []
    with Prefetched(items(), depth=2) as ahead, pytest.raises(OSError, match="disk gone after 5"):
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_leaving_a_prefetched_loop_early_stops_the_producer_and_runs_its_finally() -> None:
    made, released = [], threading.Event()

    def frames():
        try:
            for i in range(1000):
                made.append(i)
                yield i
        finally:
            released.set()  # a video reader releases its file here

    with Prefetched(frames(), depth=2) as ahead:
        for item in ahead:
            if item == 3:
                break
    assert released.is_set() and len(made) <= 3 + 1 + 2 + 1  # the item used, the queue and the one being made
    with pytest.raises(ValueError, match="depth=0"):
        Prefetched(iter(()), depth=0)


def test_a_slow_analysis_of_a_webcam_with_overlap_drops_frames_and_keeps_up(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the search in a second thread, a webcam still drops the frames analysis cannot keep up with (at most
    one frame waits between the two threads) instead of falling behind the camera."""
    camera = TimedCamera(frames=60, period=0.004)
    monkeypatch.setattr(video_module, "_open_webcam", lambda index: camera)
    monkeypatch.setattr(predictor, "detect", lambda image, frame=False: time.sleep(5 * camera.period) or [])
    result = predict_video(predictor, 0, VideoOptions(overlap=True))
    assert result.frames_dropped > 0 and result.frames_read + result.frames_dropped <= camera.given == 60
    assert 0 < result.frames_read < 30 and result.file == "webcam:0"
    assert "camera frames dropped to keep up" in summary_line(result, predictor.class_names)


@pytest.mark.skipif(not blazeface_available(), reason="needs the [faces] extra (make install-faces)")
def test_blazeface_finds_no_face_in_a_clip_of_face_free_photos(tmp_path: Path) -> None:
    """Video frames get no false face: scikit-image's rocket, coffee and chelsea (a cat), panned, 60 frames."""
    from skimage import data

    frames = []
    for photo in (data.rocket(), data.coffee(), data.chelsea()):
        bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
        for i in range(20):
            x = i * (bgr.shape[1] - 320) // 19
            frames.append(cv2.resize(bgr[:, x : x + 320], SIZE, interpolation=cv2.INTER_AREA))
    torch.manual_seed(0)
    net = LANMSFF(num_classes=7, widths=[12, 12, 12, 12]).eval()
    predictor = Predictor(optimize(net, precision="fp32"), EXPRESSIONS, 64, detector="blazeface")
    result = predict_video(predictor, write_clip(tmp_path / "no_face.mp4", frames), VideoOptions())
    assert (result.frames_read, result.frames_with_faces, result.rows) == (60, 0, [])

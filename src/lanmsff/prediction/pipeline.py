"""One prediction run over photos, videos and webcams: rows, outputs, annotated copies, counts and summary lines.

Photos are done first (one progress bar over the files), then each video (a bar of its own:
frames and frames/s). Every input is accounted for: a file with faces, a file without a face, or an
unusable file with its reason. Outputs: ``predictions.jsonl`` (one row per face of a photo, one per
face of an analysed video frame, one per problem), appended and flushed as each photo is done and every
30 analysed frames of a video, so that a crash keeps what was done (``finished_files.txt`` lists the files
whose rows are complete); ``predictions.csv``, the same rows as a table, written (atomically)
at the end; ``save_annotated`` copies in ``annotated/`` (``.jpg`` for photos, ``.mp4`` for videos),
and per video ``<name>_expressions.png``, each track's smoothed probabilities over time.

A rerun with the same output folder skips the finished files and counts them as before; a video
interrupted before its end loses its rows and is done again.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import pandas as pd

from lanmsff.data.detectors import LANDMARK_NAMES
from lanmsff.prediction.inputs import is_video
from lanmsff.prediction.photos import NO_FACE, FileResult, Predictor, annotate, result_rows
from lanmsff.prediction.video import (
    VideoOptions,
    VideoResult,
    is_webcam_name,
    predict_video,
    source_name,
    summary_line,
)
from lanmsff.utils.io import atomic_write, atomic_write_bytes, atomic_write_text
from lanmsff.utils.progress import track

COUNT_KEYS = ("files_with_faces", "faces", "files_without_face", "unreadable")
_INTEGER_COLUMNS = ("frame", "track", "face", "x", "y", "w", "h")
_LEADING_COLUMNS = (
    "file",
    "frame",
    "time_s",
    "track",
    "face",
    "x",
    "y",
    "w",
    "h",
    "detector",
    "score",
    *(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in "xy"),
    "yaw",
    "roll",
    "view",
    "view_p",
    "expression",
    "probability",
    "calibration",
)


@dataclass
class RunOptions:
    """What a run writes besides the tables, and how videos are read (:class:`VideoOptions`)."""

    save_annotated: bool = False
    video: VideoOptions = field(default_factory=VideoOptions)
    # photos: per face, the crop, MassAtt's spatial attention and Grad-CAM side by side in explain/
    explain: bool = False


class _Names:
    """Unique output names per stem and suffix (``a.jpg``, ``a_2.jpg`` for a second ``a``)."""

    def __init__(self) -> None:
        self.used: Counter = Counter()

    def __call__(self, path: str, suffix: str) -> str:
        stem = path.replace(":", "_") if is_webcam_name(path) else Path(path).stem
        self.used[stem, suffix] += 1
        n = self.used[stem, suffix]
        return f"{stem}{suffix}" if n == 1 else f"{stem}_{n}{suffix}"


def ordered_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a table: identity, box, landmarks and expression first; integers stay integers."""
    table = pd.DataFrame(rows)
    leading = [c for c in _LEADING_COLUMNS if c in table]
    rest = [c for c in table if c not in leading and c != "problem"]
    table = table[[*leading, *rest, *(["problem"] if "problem" in table else [])]]
    for column in _INTEGER_COLUMNS:
        if column in table:
            table[column] = table[column].astype("Int64")  # integers, empty where a row has none
    return table


JSONL_NAME = "predictions.jsonl"


def jsonl_text(rows: list[dict[str, Any]]) -> str:
    """Rows as JSON Lines: one JSON object a line, each ending with a newline."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_outputs(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``predictions.csv`` and ``predictions.jsonl`` (atomic)."""
    csv_path, jsonl_path = out_dir / "predictions.csv", out_dir / JSONL_NAME
    table = ordered_table(rows)
    atomic_write(csv_path, lambda f: table.to_csv(f, index=False), binary=False)
    atomic_write_text(jsonl_path, jsonl_text(rows))
    return {"csv": csv_path, "jsonl": jsonl_path}


FINISHED_NAME = "finished_files.txt"


class RowLog:
    """``predictions.jsonl`` of an output folder: the rows of earlier runs, and new rows appended as they come.

    ``finished_files.txt`` beside it lists the files whose rows are complete, one per line, each added after
    its last rows. Rows of a file that is not listed (a video stopped by a crash) are dropped when the folder
    is opened again, and the file is done again; so is a last line cut short by a crash. A folder without the
    list (written before it existed) counts every file with rows as finished. Webcam rows are always kept and
    a webcam is never finished.
    """

    def __init__(self, out_dir: Path) -> None:
        self.path, self.finished_path = out_dir / JSONL_NAME, out_dir / FINISHED_NAME
        rows: list[dict[str, Any]] = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break
        files = {str(row.get("file", "")) for row in rows}
        if self.finished_path.is_file():
            listed = set(self.finished_path.read_text(encoding="utf-8").splitlines())
            self.finished = files & listed
        else:
            self.finished = {file for file in files if not is_webcam_name(file)}
        self.rows = [row for row in rows if row["file"] in self.finished or is_webcam_name(row["file"])]
        atomic_write_text(self.path, jsonl_text(self.rows))
        atomic_write_text(self.finished_path, "".join(f"{file}\n" for file in sorted(self.finished)))

    def add(self, rows: list[dict[str, Any]]) -> None:
        """Append rows (of a file being done), flushed to disk."""
        _append(self.path, jsonl_text(rows))
        self.rows += rows

    def finish(self, file: str) -> None:
        """Record that every row of ``file`` has been added (webcams are never finished)."""
        if not is_webcam_name(file):
            _append(self.finished_path, f"{file}\n")
            self.finished.add(file)

    def outcome(self, file: str) -> tuple[str, int]:
        """The count key (:data:`COUNT_KEYS`) and the number of faces of a file finished in an earlier run."""
        rows = [row for row in self.rows if row["file"] == file]
        faces = sum(row.get("problem") is None for row in rows)
        problems = {row.get("problem") for row in rows} - {None}
        if faces:
            return "files_with_faces", faces
        return ("files_without_face" if problems <= {NO_FACE} else "unreadable"), 0


def _append(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` and flush it to disk."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _photo_outcome(result: FileResult) -> str:
    if result.problem is None:
        return "files_with_faces"
    return "files_without_face" if result.problem == NO_FACE else "unreadable"


def _video_outcome(result: VideoResult) -> str:
    if result.unusable:
        return "unreadable"
    return "files_with_faces" if result.faces else "files_without_face"


def problem_rows(result: VideoResult) -> list[dict[str, Any]]:
    """The row of a video's problem or, without a face, of :data:`NO_FACE` (none for a video with faces that
    was read to its end)."""
    problem = result.problem or (None if result.faces else NO_FACE)
    return [{"file": result.file, "frame": None, "problem": problem}] if problem else []


def predict_photos(
    predictor: Predictor,
    files: Sequence[Path],
    out_dir: Path,
    *,
    save_annotated: bool,
    names: _Names,
    log: RowLog | None = None,
    explain: bool = False,
) -> tuple[list[dict[str, Any]], Counter]:
    """Rows and outcome counts of the photos; rows appended to ``log`` and annotated copies written as they
    are done."""
    rows: list[dict[str, Any]] = []
    counts: Counter = Counter()
    for path in track(files, total=len(files), description="Predicting"):
        result, image = predictor.predict_file(path)
        done = result_rows(result, predictor.class_names, calibration=predictor.calibration)
        rows += done
        if log is not None:
            log.add(done)
            log.finish(result.file)
        counts[_photo_outcome(result)] += 1
        counts["faces"] += len(result.faces)
        if explain and image is not None and result.faces:
            stem = names(result.file, "_face")
            for i, panel in enumerate(predictor.explain(image, result.faces)):
                ok, png = cv2.imencode(".png", panel)
                if ok:
                    atomic_write_bytes(out_dir / "explain" / f"{stem}{i}.png", png.tobytes())
        if save_annotated and image is not None and result.faces:
            ok, jpeg = cv2.imencode(".jpg", annotate(image, result.faces, predictor.class_names))
            if ok:
                atomic_write_bytes(out_dir / "annotated" / names(result.file, ".jpg"), jpeg.tobytes())
    return rows, counts


def predict_inputs(
    predictor: Predictor,
    files: Sequence[Path],
    out_dir: Path,
    *,
    webcams: Sequence[int] = (),
    options: RunOptions | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Predict every photo, video and webcam, write the outputs, and return the counts.

    ``report`` gets the summary line of each video when it is done (``print``: standard output).
    """
    options = options or RunOptions()
    names = _Names()
    log = RowLog(out_dir)
    counts: Counter = Counter()
    for file in sorted(log.finished & {str(p) for p in files}):
        key, faces = log.outcome(file)
        counts[key] += 1
        counts["faces"] += faces
    todo = [p for p in files if str(p) not in log.finished]
    if len(todo) < len(files):
        report(f"{len(files) - len(todo)} files already done in {log.path} (skipped)")
    photos = [p for p in todo if not is_video(p)]
    _, photo_counts = predict_photos(
        predictor,
        photos,
        out_dir,
        save_annotated=options.save_annotated,
        names=names,
        log=log,
        explain=options.explain,
    )
    counts.update(photo_counts)
    videos = []
    for source in [*[p for p in todo if is_video(p)], *webcams]:
        name = source_name(source)
        annotated = out_dir / "annotated" / names(name, ".mp4") if options.save_annotated else None
        video_options = replace(options.video, annotated=annotated, plot=out_dir / names(name, "_expressions.png"))
        result = predict_video(predictor, source, video_options, sink=log.add)  # rows as they come
        log.add(problem_rows(result))
        log.finish(result.file)
        counts[_video_outcome(result)] += 1
        counts["faces"] += result.faces
        report(summary_line(result, predictor.class_names, stride=options.video.stride))
        videos.append(_video_summary(result, predictor.class_names))
    paths = write_outputs(log.rows, out_dir)
    total = len(files) + len(webcams)
    summary = {"files": total, **{k: counts[k] for k in COUNT_KEYS}, **{k: str(v) for k, v in paths.items()}}
    return {**summary, "videos": videos} if videos else summary


def _video_summary(result: VideoResult, class_names: Sequence[str]) -> dict[str, Any]:
    """What ``summary.json`` keeps of a video."""
    tracks = {}
    for t in result.tracks:
        best, share = t.dominant()
        tracks[str(t.id)] = {"frames": t.frames, "dominant": class_names[best], "share": round(share, 4)}
    return {
        "file": result.file,
        "frames_read": result.frames_read,
        "frames_with_faces": result.frames_with_faces,
        "faces": result.faces,
        "tracks": tracks,
        "problem": result.problem,
        "frames_per_s": round(result.frames_read / result.seconds, 2) if result.seconds else None,
        "annotated": None if result.annotated is None else str(result.annotated),
        "plot": None if result.plot is None else str(result.plot),
    }

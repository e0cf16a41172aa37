"""Run a trained model on people's own photos.

Every face of every image is found with the data pipeline's Haar cascades (frontal, and profile on
the image and its mirror), cut out as in training (a square around the detection, grown by the
training run's ``face_margin``), converted to grayscale, resized to the network's input and
classified with the optimised inference path (:func:`lanmsff.inference.optimize`).

Images may be JPEG, PNG (grayscale, 16-bit, RGBA), BMP or WebP; EXIF orientation is applied; large
images are downscaled for detection, never rejected. Files that cannot be used (unreadable, not an
image, zero bytes, no face found) are reported with their reason and the run goes on.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from lanmsff.checkpoints import load_model
from lanmsff.data.faces import DEFAULT_MARGIN, FaceDetector, UnreadableImage, crop, decode_image, square_around
from lanmsff.errors import UserError
from lanmsff.inference import optimize
from lanmsff.utils.io import atomic_write, atomic_write_bytes, atomic_write_text
from lanmsff.utils.progress import track

log = logging.getLogger(__name__)
DETECTORS = ("frontal", "profile", "profile_mirrored")


@dataclass
class Face:
    """One face: its box ``(x, y, w, h)`` in the original image, the cascade that found it, class probabilities."""

    box: tuple[int, int, int, int]
    detector: str
    probs: np.ndarray


@dataclass
class FileResult:
    """What happened to one input file: its faces, or the reason it produced none."""

    file: str
    faces: list[Face] = field(default_factory=list)
    problem: str | None = None


def find_inputs(spec: str | Path) -> list[Path]:
    """The files named by ``spec``: a file, a folder (recursively, symlinked folders not followed) or a glob."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = []
        for folder, dirs, files in os.walk(path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder) / f for f in sorted(files) if not f.startswith(".")]
        return found
    if path.exists() or path.is_symlink():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(str(spec), recursive=True))
    files = [p for p in matches if not p.is_dir()]
    if not files:
        raise UserError(f"input={spec}: no such file or folder, and no file matches it as a pattern")
    return files


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
    order = sorted(found, key=lambda f: (DETECTORS.index(f[1]), -f[0][2] * f[0][3]))
    kept: list[tuple[tuple[int, int, int, int], str]] = []
    for box, method in order:
        if all(_overlap(box, other) <= overlap for other, _ in kept):
            kept.append((box, method))
    return sorted(kept, key=lambda f: (f[0][0], f[0][1]))


class Predictor:
    """A checkpoint ready to classify the faces of photographs.

    Args:
        ckpt_path: a checkpoint written by ``train.py``.
        precision: passed to :func:`lanmsff.inference.optimize` (``auto`` uses bf16 where the CPU has it).
        backend: passed to :func:`lanmsff.inference.optimize` (``eager``, ``jit``, ``compile``, ``onnxruntime``).
        detect_side: images are downscaled so that their longer side is at most this for detection.
        min_face: smallest face searched for, as a fraction of the (downscaled) image width.
        expect_classes: fail unless the checkpoint has this many classes (``None``: any).
    """

    def __init__(
        self,
        ckpt_path: str | Path,
        *,
        precision: str = "auto",
        backend: str = "eager",
        detect_side: int = 800,
        min_face: float = 0.05,
        expect_classes: int | None = None,
    ) -> None:
        net, self.class_names, self.image_size, config = load_model(ckpt_path)
        if expect_classes is not None and len(self.class_names) != expect_classes:
            raise UserError(
                f"ckpt_path={ckpt_path} classifies {len(self.class_names)} classes ({', '.join(self.class_names)}), "
                f"not expect_classes={expect_classes}"
            )
        self.margin = float(((config or {}).get("data") or {}).get("face_margin", DEFAULT_MARGIN))
        self.model = optimize(net, precision=precision, backend=backend)
        self.detect_side = detect_side
        self.detector = FaceDetector(detect_width=detect_side, min_face=min_face)

    def detect(self, gray: np.ndarray) -> list[tuple[tuple[int, int, int, int], str]]:
        """Faces of a grayscale image (any size) in its own coordinates."""
        scale = min(1.0, self.detect_side / max(gray.shape))
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        found = [(box, method) for method in DETECTORS for box in self.detector.detect_all(small, method)]
        return [(tuple(round(v / scale) for v in box), method) for box, method in merge_detections(found)]

    @torch.inference_mode()
    def classify(self, gray: np.ndarray, boxes: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
        """Class probabilities ``(len(boxes), num_classes)`` of the faces at ``boxes``."""
        crops = [
            cv2.resize(
                crop(gray, square_around(box, self.margin)), (self.image_size,) * 2, interpolation=cv2.INTER_AREA
            )
            for box in boxes
        ]
        x = torch.from_numpy(np.stack(crops)).float().div_(255.0).unsqueeze(1)
        return self.model(x).float().softmax(dim=1).numpy()

    def predict_file(self, path: Path) -> tuple[FileResult, np.ndarray | None]:
        """Faces of one file, and the decoded colour image (for annotation) when it could be read."""
        try:
            image = decode_image(np.fromfile(path, dtype=np.uint8), color=True)
        except UnreadableImage as err:
            return FileResult(str(path), problem=str(err)), None
        except OSError as err:
            return FileResult(str(path), problem=f"cannot be read ({err.strerror or err})"), None
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self.detect(gray)
        if not found:
            return FileResult(str(path), problem="no face found"), image
        probs = self.classify(gray, [box for box, _ in found])
        faces = [Face(box, method, p) for (box, method), p in zip(found, probs, strict=True)]
        return FileResult(str(path), faces=faces), image

    def run(self, files: Sequence[Path]) -> Iterator[tuple[FileResult, np.ndarray | None]]:
        for path in track(files, total=len(files), description="Predicting"):
            yield self.predict_file(path)


def annotate(image: np.ndarray, faces: Sequence[Face], class_names: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` with a box and ``label probability`` drawn for every face."""
    out = image.copy()
    thickness = max(2, round(max(out.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face.box
        best = int(face.probs.argmax())
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 220, 0), thickness)
        label = f"{class_names[best]} {face.probs[best]:.2f}"
        scale = thickness / 3
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(y - th - 2 * thickness, 0)
        cv2.rectangle(out, (x, top), (x + tw + 2 * thickness, top + th + 2 * thickness), (0, 220, 0), -1)
        cv2.putText(
            out, label, (x + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
        )
    return out


def result_rows(result: FileResult, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Rows for the CSV / JSON lines output: one per face, or one with the problem."""
    if result.problem is not None:
        return [{"file": result.file, "face": None, "problem": result.problem}]
    rows = []
    for i, face in enumerate(result.faces):
        x, y, w, h = face.box
        best = int(face.probs.argmax())
        rows.append(
            {
                "file": result.file,
                "face": i,
                "x": x,
                "y": y,
                "w": w,
                "h": h,
                "detector": face.detector,
                "expression": class_names[best],
                "probability": round(float(face.probs[best]), 6),
                **{f"p_{name}": round(float(p), 6) for name, p in zip(class_names, face.probs, strict=True)},
                "problem": None,
            }
        )
    return rows


def _annotated_name(path: str, used: Counter) -> str:
    stem = Path(path).stem
    used[stem] += 1
    return f"{stem}.jpg" if used[stem] == 1 else f"{stem}_{used[stem]}.jpg"


def write_outputs(rows: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """``predictions.csv`` and ``predictions.jsonl`` (atomic)."""
    csv_path, jsonl_path = out_dir / "predictions.csv", out_dir / "predictions.jsonl"
    table = pd.DataFrame(rows)
    for column in ("face", "x", "y", "w", "h"):
        if column in table:
            table[column] = table[column].astype("Int64")  # integers, empty for files without a face
    atomic_write(csv_path, lambda f: table.to_csv(f, index=False), binary=False)
    atomic_write_text(jsonl_path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return {"csv": csv_path, "jsonl": jsonl_path}


def predict_files(predictor: Predictor, files: Sequence[Path], out_dir: Path, *, save_annotated: bool = False) -> dict:
    """Predict every file, write the outputs, and return the counts."""
    rows: list[dict[str, Any]] = []
    counts: Counter = Counter()
    used: Counter = Counter()
    for result, image in predictor.run(files):
        rows += result_rows(result, predictor.class_names)
        if result.problem is None:
            counts["files_with_faces"] += 1
            counts["faces"] += len(result.faces)
        elif result.problem == "no face found":
            counts["files_without_face"] += 1
        else:
            counts["unreadable"] += 1
        if save_annotated and image is not None and result.faces:
            ok, jpeg = cv2.imencode(".jpg", annotate(image, result.faces, predictor.class_names))
            if ok:
                atomic_write_bytes(out_dir / "annotated" / _annotated_name(result.file, used), jpeg.tobytes())
    paths = write_outputs(rows, out_dir)
    keys = ("files_with_faces", "faces", "files_without_face", "unreadable")
    return {"files": len(files), **{k: counts[k] for k in keys}, **{k: str(v) for k, v in paths.items()}}

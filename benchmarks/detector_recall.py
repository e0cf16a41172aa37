"""Face detector recall on public photos: faces found per photo, per view, and false faces, for each detector.

    .venv/bin/python -m benchmarks.detector_recall [--save] [--detectors blazeface cnn haar] [--threads 2]

The photos are ``tests/fixtures/photos/`` (sources and licences in ``tests/fixtures/README.md``) and scikit-image's
astronaut and cameraman; the hand-checked faces, each with its view (frontal, three-quarter, profile), are in
``tests/fixtures/photos/faces.json`` (:func:`load_photos`), which ``tests/test_detectors.py`` reads too. The
face-free photos are scikit-image's ``rocket``, ``coffee`` and ``chelsea``.

Each photo is read as ``predict.py`` reads it (:func:`lanmsff.data.faces.read_image` in colour) and searched by
:meth:`lanmsff.prediction.Predictor.detect` with ``detect_side=800``, the detection path of ``predict.py``.

Matching (:func:`match`): detections and faces are paired one to one, the pairs of highest intersection over union
first; a face is **found** when its pair's IoU is above 0.5. A detection paired with no face is **false** when it
misses every face (and every face cut by the image's edge): IoU below 0.3 and the face's centre outside it; the
rest are **loose** (a face boxed twice, or far too loosely), counted apart.

``--save`` writes ``benchmarks/results/detector_recall/<cpu-kind>-<date>.json``, one file per CPU kind and date (a
rerun on the same day replaces it: the counts do not change between runs, only the rough times do), from which
``make speed-tables`` writes the tables of ``docs/faces.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.result_files import cpu_kind, today
from lanmsff.data.faces import read_image
from lanmsff.prediction.tracking import iou
from lanmsff.utils.io import atomic_write_json

CHECKOUT = Path(__file__).resolve().parents[1]
PHOTOS = CHECKOUT / "tests" / "fixtures" / "photos"
FACES_FILE = PHOTOS / "faces.json"
RESULTS = CHECKOUT / "benchmarks" / "results" / "detector_recall"  # not read by benchmarks.tables' speed page
DETECTORS = ("blazeface", "cnn", "haar")
VIEWS = ("frontal", "three-quarter", "profile")
SKIMAGE = "skimage:"
DETECT_SIDE = 800  # predict.py's default
FOUND_IOU, FALSE_IOU = 0.5, 0.3

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Face:
    """A hand-checked face: ``box`` (x, y, w, h) and ``view`` (one of :data:`VIEWS`)."""

    box: Box
    view: str


@dataclass(frozen=True)
class Photo:
    """A photo of :data:`FACES_FILE`: its faces and the faces cut by its edge (``partial``: neither asked for nor
    false)."""

    name: str
    faces: tuple[Face, ...]
    partial: tuple[Box, ...] = ()


@dataclass(frozen=True)
class Match:
    """Detections against a photo's faces: ``found[i]`` for each face, and the unpaired detections."""

    found: tuple[bool, ...]
    false: int
    loose: int


def load_photos(path: Path = FACES_FILE) -> tuple[list[Photo], list[str]]:
    """The photos with faces and the names of the face-free photos, from ``faces.json``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    photos = []
    for name, entry in data["photos"].items():
        faces = tuple(Face(tuple(f["box"]), f["view"]) for f in entry["faces"])  # type: ignore[arg-type]
        unknown = {f.view for f in faces} - set(VIEWS)
        if unknown:
            raise ValueError(f"{path}: {name} has views {sorted(unknown)}, not one of {VIEWS}")
        photos.append(Photo(name, faces, tuple(tuple(b) for b in entry.get("partial", []))))  # type: ignore[misc]
    return photos, list(data["face_free"])


def read_photo(name: str) -> np.ndarray:
    """The BGR pixels of photo ``name``: a file of :data:`PHOTOS`, or ``skimage:<data function>``."""
    if name.startswith(SKIMAGE):
        from skimage import data

        image = getattr(data, name.removeprefix(SKIMAGE))()
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    return read_image(PHOTOS / name, color=True)


def match(boxes: Sequence[Box], photo: Photo) -> Match:
    """Pair ``boxes`` with the faces of ``photo``, best IoU first (see the module's docstring)."""
    pairs = sorted(
        ((iou(box, face.box), i, j) for i, box in enumerate(boxes) for j, face in enumerate(photo.faces)),
        reverse=True,
    )
    paired: dict[int, int] = {}  # face -> detection
    for overlap, i, j in pairs:
        if overlap <= FOUND_IOU:
            break
        if j not in paired and i not in paired.values():
            paired[j] = i
    others = [box for i, box in enumerate(boxes) if i not in paired.values()]
    known = [face.box for face in photo.faces] + list(photo.partial)
    false = sum(all(iou(box, face) < FALSE_IOU and not _holds_centre(box, face) for face in known) for box in others)
    return Match(tuple(j in paired for j in range(len(photo.faces))), false, len(others) - false)


def _holds_centre(box: Box, face: Box) -> bool:
    """Whether the centre of ``face`` lies inside ``box``."""
    x, y, w, h = box
    cx, cy = face[0] + face[2] / 2, face[1] + face[3] / 2
    return x <= cx <= x + w and y <= cy <= y + h


def measure(detector: str, photos: Sequence[Photo], face_free: Sequence[str]) -> dict[str, Any]:
    """Per photo, what ``detector`` found (``predict.py``'s detection path) and the median time per photo."""
    import torch

    from lanmsff.prediction import Predictor

    # detect() never runs the model: a stand-in network is enough for the detection path
    predictor = Predictor(torch.nn.Identity(), ["face"], 64, detector=detector, detect_side=DETECT_SIDE)
    per_photo, seconds = {}, []
    for photo in [*photos, *(Photo(name, ()) for name in face_free)]:
        image = read_photo(photo.name)
        start = time.perf_counter()
        boxes = [d.box for d in predictor.detect(image)]
        seconds.append(time.perf_counter() - start)
        found = match(boxes, photo)
        per_photo[photo.name] = {
            "found": sum(found.found),
            "missed": [j for j, hit in enumerate(found.found) if not hit],
            "false": found.false,
            "loose": found.loose,
            "boxes": [list(box) for box in boxes],
        }
    return {"photos": per_photo, "median_s_per_photo": round(statistics.median(seconds), 3)}


def run(detectors: Sequence[str], threads: int) -> dict[str, Any]:
    """The whole measurement: the photos' faces and views, then each detector's results."""
    import torch

    from lanmsff.runtime.hardware import cpu_description

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    photos, face_free = load_photos()
    machine = cpu_description()
    return {
        "date": today(),
        "cpu_kind": cpu_kind(machine),
        "machine": {"cpu": machine.get("cpu"), "cores": machine.get("cores"), "threads": threads},
        "detect_side": DETECT_SIDE,
        "found_iou": FOUND_IOU,
        "false_iou": FALSE_IOU,
        "photos": {p.name: {"views": [f.view for f in p.faces]} for p in photos},
        "face_free": face_free,
        "detectors": {name: measure(name, photos, face_free) for name in detectors},
    }


def save(result: dict[str, Any], folder: Path = RESULTS) -> Path:
    """``result`` as ``<folder>/<cpu-kind>-<date>.json`` (replacing that day's file)."""
    return atomic_write_json(Path(folder) / f"{result['cpu_kind']}-{result['date']}.json", result)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.tables import recall_tables
    from lanmsff.data.detectors import blazeface_available

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save", action="store_true", help="write benchmarks/results/detector_recall/<kind>-<date>")
    args = parser.parse_args(argv)
    detectors = list(args.detectors)
    if "blazeface" in detectors and not blazeface_available():
        detectors.remove("blazeface")
        print("BlazeFace is not installed (make install-faces): not measured", file=sys.stderr)
    result = run(detectors, args.threads)
    print(recall_tables(result))
    if args.save:
        print(f"saved to {save(result)}")


if __name__ == "__main__":
    main()

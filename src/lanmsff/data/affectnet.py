"""AffectNet (Mollahosseini et al., IEEE TAC 2017): both published layouts, the 7- and 8-class protocols.

The release of the paper ships the manually annotated images with two CSV files::

    Manually_Annotated_file_lists/training.csv     (about 414,800 rows)
    Manually_Annotated_file_lists/validation.csv   (5,500 rows: 500 per expression code)
    Manually_Annotated_Images/<folder>/<file>.jpg

with the columns ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
expression, valence, arousal``. The face box crops the photograph (``face_crop`` other than ``none``); a row
without a usable box is cropped as ``face_crop`` says (``detect``: the face detector).

The later release ships cropped 224x224 faces with one ``.npy`` file per annotation::

    train_set/images/<n>.jpg     train_set/annotations/<n>_exp.npy (and _val, _aro, _lnd)
    val_set/images/<n>.jpg       val_set/annotations/<n>_exp.npy

Expression codes: 0 neutral, 1 happiness, 2 sadness, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt,
8 none, 9 uncertain, 10 no-face. The common protocols train on the training set and report on the validation
set (the test set was never published): ``classes=8`` (codes 0-7) or ``classes=7`` (contempt left out too).
The non-expression codes 8-10 (and contempt under 7 classes) are excluded and counted per code; rows with a
code outside 0-10, a malformed row or a listed image that is missing are skipped with their line and reason.
AffectNet is heavily imbalanced (happiness about 134k training images, contempt about 4k): report UAR beside
accuracy, and train with ``sampling=balanced`` to draw every class equally often.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lanmsff.data.datamodule import IndexedDataModule
from lanmsff.data.fer import read_rows
from lanmsff.data.kdef import KDEFIndex, KDEFRecord
from lanmsff.data.splits import Split, official_split
from lanmsff.errors import UserError, check_choice

CLASSES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")
NON_EXPRESSIONS = {8: "none", 9: "uncertain", 10: "no-face"}
CSV_FILES = {"train": "training.csv", "test": "validation.csv"}
NPY_SETS = {"train": "train_set", "test": "val_set"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
CLASS_COUNTS = (7, 8)
AFFECTNET_HELP = (
    "AffectNet is licensed for research and is not downloaded by this project: request it at "
    "http://mohammadmahoor.com/affectnet/ and pass the folder holding Manually_Annotated_file_lists and "
    "Manually_Annotated_Images (or train_set and val_set) with data.root=/path/to/AffectNet."
)


@dataclass(frozen=True)
class AffectNetName:
    """One annotated face: its set (``train``; ``test`` = the validation set), its class index and its box."""

    part: str
    label: int
    box: tuple[int, int, int, int] | None = None
    subject = None  # AffectNet does not name its people
    angle = "S"
    angle_index = 0

    @property
    def expression(self) -> str:
        return CLASSES[self.label]


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _layout(base: Path) -> tuple[str, Path, Path]:
    """``(kind, annotations, images)``: ``csv`` with the folders of the CSV files and of the images, or ``npy``."""
    lists = _first_dir([base / "Manually_Annotated_file_lists", base])
    if lists is not None and (lists / CSV_FILES["train"]).is_file():
        images = _first_dir(
            [base / "Manually_Annotated_Images", base / "Manually_Annotated" / "Manually_Annotated_Images", base]
        )
        return "csv", lists, images
    if (base / NPY_SETS["train"]).is_dir():
        return "npy", base, base
    raise UserError(f"neither Manually_Annotated_file_lists/training.csv nor train_set/ under {base}. {AFFECTNET_HELP}")


def _box(fields: list[str]) -> tuple[int, int, int, int] | None:
    """The face box ``(x, y, w, h)`` of a CSV row; ``None`` (the detector decides) when not a positive box."""
    try:
        x, y, w, h = (float(v) for v in fields)
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return round(x), round(y), round(w), round(h)


class _Indexer:
    """Adds one annotated image at a time to an index, applying the label rules of the module docstring."""

    def __init__(self, index: KDEFIndex, classes: int) -> None:
        self.index, self.classes, self.seen = index, classes, {}

    def add(self, where: str, path: str, code: str, part: str, box: tuple | None, exists: bool) -> None:
        if not code.lstrip("-").isdigit() or not 0 <= int(code) <= 10:
            self.index.skipped.append({"file": where, "reason": f"expression {code!r} not in 0..10"})
        elif path in self.seen:
            self.index.skipped.append({"file": where, "reason": f"duplicate of {self.seen[path]}"})
        elif not exists:
            self.index.skipped.append({"file": path, "reason": f"listed at {where} but missing"})
        elif int(code) in NON_EXPRESSIONS:
            self.index.excluded.append({"file": path, "reason": f"{NON_EXPRESSIONS[int(code)]} (code {code})"})
        elif int(code) >= self.classes:
            self.index.excluded.append({"file": path, "reason": f"{CLASSES[int(code)]} (data.classes={self.classes})"})
        else:
            self.index.records.append(KDEFRecord(path, AffectNetName(part, int(code), box)))
        self.seen.setdefault(path, where)


def _index_csv(indexer: _Indexer, lists: Path, images: Path) -> None:
    base = indexer.index.root
    for part, file_name in CSV_FILES.items():
        path = lists / file_name
        if not path.is_file():
            raise UserError(f"{path} is missing; AffectNet ships training.csv and validation.csv. {AFFECTNET_HELP}")
        lines, rows = read_rows(path, COLUMNS)
        prefix = images.relative_to(base).as_posix()
        for line, fields in zip(lines.tolist(), rows, strict=True):
            where = f"{path.relative_to(base).as_posix()}:{line}"
            if fields is None or not fields[0]:
                indexer.index.skipped.append({"file": where, "reason": "malformed row"})
                continue
            rel = f"{prefix}/{fields[0]}" if prefix != "." else fields[0]
            indexer.add(where, rel, fields[5], part, _box(fields[1:5]), (base / rel).is_file())


def _index_npy(indexer: _Indexer) -> None:
    base = indexer.index.root
    for part, folder in NPY_SETS.items():
        images = base / folder / "images"
        if not images.is_dir():
            raise UserError(f"{images} is missing; the later AffectNet release ships train_set and val_set")
        for entry in sorted(os.scandir(images), key=lambda e: e.name):
            rel = f"{folder}/images/{entry.name}"
            stem = Path(entry.name).stem
            try:
                code = str(int(np.load(base / folder / "annotations" / f"{stem}_exp.npy", allow_pickle=False)))
            except (OSError, ValueError, TypeError) as err:
                indexer.index.skipped.append({"file": rel, "reason": f"no readable {stem}_exp.npy ({err})"})
                continue
            indexer.add(rel, rel, code, part, None, True)


def index_affectnet(root: str | Path, *, classes: int = 8) -> KDEFIndex:
    """Index an AffectNet copy in either published layout (module docstring); ``classes`` is 7 or 8."""
    check_choice("data.classes", classes, CLASS_COUNTS)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"AffectNet data root not found: {base}. {AFFECTNET_HELP}")
    kind, lists, images = _layout(base)
    index = KDEFIndex(root=base, dataset="affectnet", expressions=CLASSES[:classes], angles=("S",))
    indexer = _Indexer(index, classes)
    if kind == "csv":
        _index_csv(indexer, lists, images)
    else:
        _index_npy(indexer)
    if not index.records:
        raise UserError(f"{base}: no usable AffectNet image (e.g. {index.skipped[:1] or index.excluded[:1]})")
    return index


class AffectNetDataModule(IndexedDataModule):
    """AffectNet: train on the training set, test on the validation set (the usual protocol), 7 or 8 classes.

    Args:
        root: the folder holding ``Manually_Annotated_file_lists`` and ``Manually_Annotated_Images``, or
            ``train_set`` and ``val_set``.
        classes: 8 (codes 0-7) or 7 (contempt left out); none, uncertain and no-face are always left out,
            and every left-out image is counted (``excluded``).
        val_fraction: share of the training set used for validation (checkpoint choice).
        sampling: ``balanced`` draws every class equally often (AffectNet is heavily imbalanced).
        everything else: as :class:`~lanmsff.data.datamodule.IndexedDataModule`.
    """

    group_names = ()
    dataset = "affectnet"

    def __init__(self, root: str | Path, *, classes: int = 8, val_fraction: float = 0.05, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        check_choice("data.classes", classes, CLASS_COUNTS)
        self.classes, self.val_fraction = classes, val_fraction
        self.class_names = CLASSES[:classes]
        self.indexer = partial(index_affectnet, classes=classes)

    def split(self) -> tuple[KDEFIndex, list[KDEFRecord], Split]:
        index = self.usable()
        parts = [r.name.part for r in index.records]
        if "test" not in parts or "train" not in parts:
            raise UserError(f"{index.root}: the training and the validation set both need usable images")
        split = official_split(parts, [r.name.label for r in index.records], self.val_fraction, self.seed)
        return index, index.records, split

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "protocol": f"official-{self.classes}class", "selection": "validation"}

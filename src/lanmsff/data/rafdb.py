"""RAF-DB basic (Li, Deng and Du, CVPR 2017): the label list, the aligned or original images, the data module.

The ``basic`` folder of the release holds::

    EmoLabel/list_patition_label.txt              one line per image: "train_00001.jpg 5" (the name and a label 1..7)
    Image/aligned/train_00001_aligned.jpg          100x100 faces, aligned by the authors (what most papers train on)
    Image/original/train_00001.jpg                 the photographs
    Annotation/boundingbox/train_00001_boundingbox.txt   the face box of the original: "x1 y1 x2 y2"

Labels: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral. The split is in the name:
``train_*`` (12,271 images) and ``test_*`` (3,068); validation is carved from ``train`` per class
(:func:`lanmsff.data.splits.official_split`). The standard protocol reports accuracy and UAR on ``test``.

Lines that cannot be used are skipped with their line number and reason (malformed line, label out of
range, a name that is neither ``train_`` nor ``test_``, a duplicate, a listed image that is missing);
images on disk that the list does not name are reported too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lanmsff.data.datamodule import IndexedDataModule
from lanmsff.data.kdef import KDEFIndex, KDEFRecord
from lanmsff.data.splits import Split, official_split
from lanmsff.errors import UserError, check_choice

CLASSES = ("surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral")
LABEL_FILE = "EmoLabel/list_patition_label.txt"
IMAGE_SETS = ("aligned", "original")
PARTS = ("train", "test")
RAFDB_HELP = (
    "RAF-DB is licensed for non-commercial research and is not downloaded by this project: request it at "
    "http://www.whdeng.cn/raf/model1.html and pass its basic folder with data.root=/path/to/RAF-DB/basic."
)


@dataclass(frozen=True)
class RafdbName:
    """One image of RAF-DB basic: its set (``train`` / ``test``), its listed name, its class and, for the
    original photographs, the annotated face box ``(x, y, w, h)``."""

    part: str
    listed: str
    label: int
    box: tuple[int, int, int, int] | None = None
    subject = None  # RAF-DB does not name its people
    angle = "S"
    angle_index = 0

    @property
    def expression(self) -> str:
        return CLASSES[self.label]


def resolve_root(root: str | Path) -> Path:
    """The ``basic`` folder: ``root`` itself or ``root/basic``; :class:`UserError` names where it looked."""
    given = Path(root).expanduser()
    for candidate in (given, given / "basic"):
        if (candidate / LABEL_FILE).is_file():
            return candidate
    raise UserError(f"no {LABEL_FILE} under {given} or {given / 'basic'}. {RAFDB_HELP}")


def _image_path(listed: str, images: str) -> str:
    stem = Path(listed).stem
    return f"Image/aligned/{stem}_aligned.jpg" if images == "aligned" else f"Image/original/{listed}"


def _read_box(base: Path, listed: str) -> tuple[int, int, int, int] | None:
    """The annotated box of an original photograph as ``(x, y, w, h)``; ``None`` when absent or unreadable."""
    path = base / "Annotation" / "boundingbox" / f"{Path(listed).stem}_boundingbox.txt"
    try:
        values = [float(v) for v in path.read_text().split()]
    except (OSError, ValueError):
        return None
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        return None
    x1, y1, x2, y2 = values
    return round(x1), round(y1), round(x2 - x1), round(y2 - y1)


def _parse_line(line: str) -> tuple[str, str, int]:
    """``(name, part, label index)`` of one list line; :class:`ValueError` with the reason otherwise."""
    fields = line.split()
    if len(fields) != 2:
        raise ValueError("not '<name> <label>'")
    name, label = fields
    part = name.split("_", 1)[0]
    if part not in PARTS:
        raise ValueError("name is neither train_... nor test_...")
    if not (label.isdigit() and 1 <= int(label) <= len(CLASSES)):
        raise ValueError(f"label {label} not in 1..{len(CLASSES)}")
    return name, part, int(label) - 1


def index_rafdb(root: str | Path, *, images: str = "aligned") -> KDEFIndex:
    """Index RAF-DB basic from its label list; ``images`` is ``aligned`` or ``original`` (with the annotated boxes)."""
    check_choice("data.images", images, IMAGE_SETS)
    base = resolve_root(root)
    index = KDEFIndex(root=base, dataset="rafdb", expressions=CLASSES, angles=("S",))
    listed_paths: dict[str, str] = {}
    lines = (base / LABEL_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{LABEL_FILE}:{number}"
        try:
            name, part, label = _parse_line(line)
        except ValueError as err:
            index.skipped.append({"file": where, "reason": str(err)})
            continue
        path = _image_path(name, images)
        if path in listed_paths:
            index.skipped.append({"file": where, "reason": f"duplicate of {listed_paths[path]}"})
            continue
        listed_paths[path] = where
        if not (base / path).is_file():
            index.skipped.append({"file": path, "reason": f"listed at {where} but missing"})
            continue
        box = _read_box(base, name) if images == "original" else None
        index.records.append(KDEFRecord(path, RafdbName(part, name, label, box)))
    folder = base / "Image" / images
    if folder.is_dir():
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            rel = f"Image/{images}/{entry.name}"
            if rel not in listed_paths:
                index.skipped.append({"file": rel, "reason": f"not in {LABEL_FILE}"})
    if not index.records:
        raise UserError(f"{base / LABEL_FILE}: no usable image (e.g. {index.skipped[:1]}). {RAFDB_HELP}")
    return index


class RafdbDataModule(IndexedDataModule):
    """RAF-DB basic, 7 classes, its official train/test split; validation carved from ``train`` per class.

    Args:
        root: the ``basic`` folder (or the folder holding it).
        images: ``aligned`` (100x100 faces; ``face_crop: none`` keeps them as they are) or ``original`` (the
            photographs, cropped with the annotated boxes; the detector where a box is missing).
        val_fraction: share of ``train`` used for validation.
        sampling: ``natural`` or ``balanced`` (every class drawn equally often in training).
        everything else: as :class:`~lanmsff.data.datamodule.IndexedDataModule`.
    """

    class_names = CLASSES
    group_names = ()
    dataset = "rafdb"

    def __init__(self, root: str | Path, *, images: str = "aligned", val_fraction: float = 0.1, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        check_choice("data.images", images, IMAGE_SETS)
        self.images, self.val_fraction = images, val_fraction
        self.indexer = partial(index_rafdb, images=images)

    def split(self) -> tuple[KDEFIndex, list[KDEFRecord], Split]:
        index = self.usable()
        records = index.records
        parts = [r.name.part for r in records]
        for part in PARTS:
            if part not in parts:
                raise UserError(f"{index.root / LABEL_FILE}: no usable {part}_ image; the official split needs both")
        split = official_split(parts, [r.name.label for r in records], self.val_fraction, self.seed)
        return index, records, split

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "protocol": "official", "images": self.images, "selection": "validation"}

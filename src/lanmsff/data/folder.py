"""Any image folder: ``root/<class name>/*.jpg``, or a CSV of ``file,label[,subject][,view]``, so that a lab's
own photographs train without code.

Without a CSV, every sub-folder of ``root`` is a class (its name, in sorted order unless ``classes`` orders
them) and every JPEG or PNG below it an image of that class. With a CSV (``root/labels.csv`` or ``labels``),
its rows name the images (``file`` relative to ``root``) and their ``label`` (a class name); the optional
``subject`` column names the person, the optional ``view`` column the camera angle or pose.

Class names are matched to other data sets' through :mod:`lanmsff.data.classes` (``happy``, ``happiness``,
``Happy`` ...), so cross-dataset tests and training on several sets work with any spelling it knows.

Splits use KDEF's protocols (:mod:`lanmsff.data.splits`): person-independent ``subject`` folds when every image
has a subject, otherwise ``stratified`` (image-level; numbers marked ``identities_shared``). Per-view metrics
are reported under the ``view`` names. Stray files, unreadable images, rows with an unknown class or a
missing file are skipped with their reason, as for KDEF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from lanmsff.data.datamodule import KDEFDataModule
from lanmsff.data.fer import read_rows
from lanmsff.data.kdef import KDEFIndex, KDEFRecord
from lanmsff.errors import ConfigError, UserError

SUFFIXES = (".jpg", ".jpeg", ".png")
LABELS_FILE = "labels.csv"
NO_VIEW = "all"


@dataclass(frozen=True)
class FolderName:
    """One image of a folder data set: its class, person and view (``None`` when not given)."""

    expression: str
    label: int
    subject: str | None = None
    view: str | None = None
    views: tuple[str, ...] = field(default=(NO_VIEW,), compare=False)

    @property
    def angle(self) -> str:
        return self.view or NO_VIEW

    @property
    def angle_index(self) -> int:
        return self.views.index(self.angle)


def _class_folders(base: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(base) if e.is_dir() and not e.name.startswith("."))


def _check_classes(found: list[str], classes: list[str] | None, where: str) -> tuple[str, ...]:
    """The class order: ``classes`` when given (each must be found), else the found names sorted."""
    if not classes:
        return tuple(sorted(found))
    missing = sorted(set(classes) - set(found))
    if missing:
        raise ConfigError(f"data.classes names {missing}, which {where} does not have (it has {sorted(found)})")
    return tuple(classes)


def _rows_from_folders(base: Path, index: KDEFIndex) -> list[tuple[str, str, str | None, str | None]]:
    """``(path, class, subject, view)`` of every image in a class folder; other files are skipped."""
    rows = []
    for folder in _class_folders(base):
        for dirpath, dirnames, filenames in os.walk(base / folder):
            dirnames.sort()
            for name in sorted(filenames):
                rel = (Path(dirpath) / name).relative_to(base).as_posix()
                if not name.lower().endswith(SUFFIXES):
                    index.skipped.append({"file": rel, "reason": "stray file (not a JPEG or PNG image)"})
                elif (base / rel).stat().st_size == 0:
                    index.skipped.append({"file": rel, "reason": "zero-byte file"})
                else:
                    rows.append((rel, folder, None, None))
    return rows


def _rows_from_csv(base: Path, path: Path, index: KDEFIndex) -> list[tuple[str, str, str | None, str | None]]:
    header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
    names = [h.strip().lower() for h in (header[0].split(",") if header else [])]
    columns = ["file", "label", *[c for c in ("subject", "view") if c in names]]
    lines, fields = read_rows(path, columns)
    rows = []
    for line, row in zip(lines.tolist(), fields, strict=True):
        where = f"{path.name}:{line}"
        if row is None or not row[0] or not row[1]:
            index.skipped.append({"file": where, "reason": "malformed row"})
            continue
        values = dict(zip(columns, row, strict=True))
        if not (base / values["file"]).is_file():
            index.skipped.append({"file": values["file"], "reason": f"listed at {where} but missing"})
            continue
        rows.append((values["file"], values["label"], values.get("subject") or None, values.get("view") or None))
    return rows


def index_folder(root: str | Path, *, labels: str | Path | None = None, classes: list[str] | None = None) -> KDEFIndex:
    """Index an image folder (module docstring); ``labels`` is the CSV (default ``root/labels.csv`` if present)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"image folder not found: {base}; lay it out as <root>/<class name>/*.jpg")
    csv_path = Path(labels).expanduser() if labels else base / LABELS_FILE
    index = KDEFIndex(root=base, dataset="folder")
    if labels or csv_path.is_file():
        rows, where = _rows_from_csv(base, csv_path, index), str(csv_path)
    else:
        rows, where = _rows_from_folders(base, index), str(base)
    known = _check_classes(sorted({r[1] for r in rows}), classes, where)
    views = tuple(sorted({r[3] for r in rows if r[3]})) or (NO_VIEW,)
    if any(r[3] is None for r in rows) and views != (NO_VIEW,):
        views = (*views, NO_VIEW)
    index.expressions, index.angles = known, views
    seen: dict[str, bool] = {}
    for path, label, subject, view in rows:
        if label not in known:
            index.excluded.append({"file": path, "reason": f"class {label!r} not in data.classes"})
        elif path in seen:
            index.skipped.append({"file": path, "reason": "listed twice"})
        else:
            index.records.append(KDEFRecord(path, FolderName(label, known.index(label), subject, view, views)))
        seen[path] = True
    if not index.records:
        raise UserError(f"no usable image in {where}; lay it out as <root>/<class name>/*.jpg or give a labels CSV")
    return index


class FolderDataModule(KDEFDataModule):
    """An image folder (:func:`index_folder`) with KDEF's protocols; classes and views are read from the data.

    Args:
        root: the folder.
        labels: a CSV of ``file,label[,subject][,view]`` (default: ``root/labels.csv`` when it exists).
        classes: the class names in label order (default: the names found, sorted).
        protocol: ``subject`` needs a subject for every image; ``null`` chooses ``subject`` when every image has
            one, else ``stratified``.
        everything else: as :class:`~lanmsff.data.datamodule.KDEFDataModule` (``face_crop: none`` for faces that
            are already cropped).
    """

    dataset = "folder"

    def __init__(
        self,
        root: str | Path,
        *,
        labels: str | Path | None = None,
        classes: list[str] | None = None,
        protocol: str | None = None,
        **kwargs: Any,
    ) -> None:
        indexer = partial(index_folder, labels=labels, classes=list(classes) if classes else None)
        # the classes and views must be known before the model is built: the file names tell them
        probe = indexer(Path(root).expanduser()) if Path(root).expanduser().is_dir() else None
        if protocol is None:
            every = probe is not None and all(r.subject is not None for r in probe.records)
            protocol = "subject" if every else "stratified"
        super().__init__(root, protocol=protocol, **kwargs)
        self.indexer = indexer
        if probe is not None:
            self.class_names, self.group_names = probe.expressions, probe.angles

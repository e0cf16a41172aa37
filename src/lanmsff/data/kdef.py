"""Finding and indexing a KDEF copy on disk, warts included.

The root may be the folder holding ``KDEF_and_AKDEF``, ``KDEF_and_AKDEF`` itself, or its ``KDEF``
subfolder. Images live in 140 identity-session folders (``AF01`` .. ``BM35``); the ``AKDEF``
averaged faces and any other folders are ignored.

The indexer handles the known defects of public copies by file name and size; every file that is
not used is listed with its reason, so nothing disappears silently from the counts:

* ``AF31V.JPG`` and ``AM31H.JPG`` are ``AF31SAHL`` and ``AM31SUHR`` (:data:`ERRATA`; listed as renamed);
* zero-byte files, stray files (``Thumbs.db``, ``.DS_Store``, ``readme.txt``), names that do not
  follow the grammar, files in the wrong folder, and duplicates of the same (subject, session,
  expression, angle) are skipped.

Defects that need the pixels (black placeholder images, unreadable or truncated JPEGs) are found
when the images are decoded (:mod:`lanmsff.data.cache`) and added to the same report.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS, KDEFName, parse_name
from lanmsff.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg")
# Misnamed files of some public copies: (folder, file name) -> the name they should have.
ERRATA = {("AF31", "AF31V.JPG"): "AF31SAHL.JPG", ("AM31", "AM31H.JPG"): "AM31SUHR.JPG"}
KDEF_HELP = (
    "KDEF is licensed for research and is not downloaded by this project: register at "
    "https://www.kdef.se, unpack the archive, and pass its folder with data.root=/path/to/KDEF_and_AKDEF. "
    "To try the framework without KDEF, use the synthetic dataset in the same layout: "
    "python train.py data=kdef_synthetic (or: make train)."
)


class FaceName(Protocol):
    """What every data set's parsed name or annotation tells about one image (KDEF's is :class:`KDEFName`)."""

    @property
    def subject(self) -> str | None: ...  # the person (None: not known)

    @property
    def expression(self) -> str: ...  # the class code, e.g. AF or fearful

    @property
    def label(self) -> int: ...  # the class index

    @property
    def angle(self) -> str: ...  # the camera angle as a KDEF code (S when not known)

    @property
    def angle_index(self) -> int: ...  # the index of the view in the data set's views


@dataclass(frozen=True)
class KDEFRecord:
    """One usable image: its path relative to the index root and its (possibly corrected) name.

    Every image data set is indexed into these records (RaFD, RAF-DB, AffectNet and image folders
    too): ``name`` is the data set's parsed name or annotation, with at least ``subject`` (the person,
    ``None`` when unknown), ``expression`` (the class code), ``label`` (its index), ``angle`` (the
    camera angle as a KDEF angle code, ``S`` when unknown) and ``angle_index``; see :class:`FaceName`.
    """

    path: str
    name: FaceName

    @property
    def subject(self) -> str:
        return self.name.subject


@dataclass
class KDEFIndex:
    """Usable images plus everything that was skipped or renamed, with reasons."""

    root: Path
    records: list[KDEFRecord] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)
    # usable images left out by a setting, not a defect (RaFD's contempt, AffectNet's none/uncertain/no-face)
    excluded: list[dict[str, str]] = field(default_factory=list)
    dataset: str = "kdef"
    expressions: tuple[str, ...] = EXPRESSIONS  # the class codes, in label order
    angles: tuple[str, ...] = ANGLES  # the view codes, in group order

    def __len__(self) -> int:
        return len(self.records)

    @property
    def subjects(self) -> list[str]:
        """The people of the usable images (empty when the data set does not name them)."""
        return sorted({r.subject for r in self.records if r.subject is not None})

    def per_angle(self) -> dict[str, int]:
        counts = Counter(r.name.angle for r in self.records)
        return {a: counts[a] for a in self.angles if counts[a]}

    def per_expression(self) -> dict[str, int]:
        counts = Counter(r.name.expression for r in self.records)
        return {e: counts[e] for e in self.expressions if counts[e]}

    def drop(self, failures: dict[str, str]) -> None:
        """Remove records whose image failed to decode (``{path: reason}``) and report them as skipped."""
        if not failures:
            return
        self.records = [r for r in self.records if r.path not in failures]
        self.skipped.extend({"file": path, "reason": reason} for path, reason in sorted(failures.items()))

    def report(self) -> dict:
        """The summary printed by ``lanmsff-data check --json``."""
        return {
            "dataset": self.dataset,
            "root": str(self.root),
            "images": len(self.records),
            "subjects": len(self.subjects),
            "per_angle": self.per_angle(),
            "per_expression": self.per_expression(),
            "skipped": sorted(self.skipped, key=lambda s: s["file"]),
            "renamed": sorted(self.renamed, key=lambda s: s["file"]),
            "excluded": sorted(self.excluded, key=lambda s: s["file"]),
        }


def _session_folder(name: str) -> bool:
    return len(name) == 4 and parse_name(f"{name}NES.JPG") is not None


def _looks_like_session_folders(path: Path) -> bool:
    try:
        return path.is_dir() and any(_session_folder(e.name) and e.is_dir() for e in os.scandir(path))
    except OSError:
        return False


def resolve_root(root: str | Path) -> Path:
    """The folder that directly holds the identity-session folders (``.../KDEF``).

    Raises :class:`UserError` naming where it looked and how to obtain KDEF.
    """
    given = Path(root).expanduser()
    candidates = [given, given / "KDEF", given / "KDEF_and_AKDEF" / "KDEF"]
    for candidate in candidates:
        if _looks_like_session_folders(candidate):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    if not given.exists():
        raise UserError(f"KDEF data root not found: {given} does not exist (looked in: {looked}). {KDEF_HELP}")
    raise UserError(
        f"No KDEF identity-session folders (AF01 .. BM35) found under {given} (looked in: {looked}). {KDEF_HELP}"
    )


def _classify(folder: str, entry: os.DirEntry) -> tuple[KDEFName | None, str | None, str | None]:
    """``(name, renamed_to, skip_reason)`` for one directory entry of a session folder."""
    if not entry.is_file():  # folders, sockets, broken or looping symlinks
        return None, None, "not a regular file"
    if not entry.name.lower().endswith(IMAGE_SUFFIXES):
        return None, None, "stray file (not a JPEG image)"
    if entry.stat().st_size == 0:
        return None, None, "zero-byte file"
    fixed = ERRATA.get((folder.upper(), entry.name.upper()))
    name = parse_name(fixed or entry.name)
    if name is None:
        return None, None, "file name does not follow the KDEF grammar"
    if name.folder != folder.upper():
        return None, None, f"belongs to folder {name.folder}, found in {folder}"
    return name, fixed, None


def index_kdef(root: str | Path) -> KDEFIndex:
    """Index every image of a KDEF copy; paths are relative to the resolved ``KDEF`` folder.

    Records are sorted by path, so the index never depends on the file-system listing order; of
    duplicates, the first path in that order is kept.
    """
    base = resolve_root(root)
    index = KDEFIndex(root=base)
    seen: dict[KDEFName, str] = {}
    folders = sorted(e.name for e in os.scandir(base) if _session_folder(e.name) and e.is_dir())
    for folder in folders:
        for entry in sorted(os.scandir(base / folder), key=lambda e: e.name):
            rel = f"{folder}/{entry.name}"
            try:
                name, fixed, reason = _classify(folder, entry)
            except OSError as err:
                name, fixed, reason = None, None, f"cannot be read ({err.strerror or err})"
            if reason is not None:
                index.skipped.append({"file": rel, "reason": reason})
                continue
            if name in seen:
                index.skipped.append({"file": rel, "reason": f"duplicate of {seen[name]}"})
                continue
            seen[name] = rel
            if fixed is not None:
                index.renamed.append({"file": rel, "as": fixed})
            index.records.append(KDEFRecord(rel, name))
    return index

"""Finding and indexing a KDEF copy on disk.

The root may be the folder holding ``KDEF_and_AKDEF``, ``KDEF_and_AKDEF`` itself, or its ``KDEF``
subfolder. Images live in 140 identity-session folders (``AF01`` .. ``BM35``); the ``AKDEF``
averaged faces and any other folders are ignored. Every file that is not used is reported with a
reason, so nothing disappears silently from the counts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lanmsff.data.kdef_names import ANGLES, EXPRESSIONS, KDEFName, parse_name
from lanmsff.errors import UserError

_FOLDER_LEN = 4  # AF01
KDEF_HELP = (
    "KDEF is licensed for research and is not downloaded by this project: register at "
    "https://www.kdef.se, unpack the archive, and pass its folder with data.root=/path/to/KDEF_and_AKDEF. "
    "To try the framework without KDEF, use the synthetic dataset in the same layout: "
    "python train.py data=kdef_synthetic (or: make train)."
)


@dataclass(frozen=True)
class KDEFRecord:
    """One usable image: its path relative to the index root and its parsed name."""

    path: str
    name: KDEFName

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

    def __len__(self) -> int:
        return len(self.records)

    @property
    def subjects(self) -> list[str]:
        return sorted({r.subject for r in self.records})

    def per_angle(self) -> dict[str, int]:
        counts = Counter(r.name.angle for r in self.records)
        return {a: counts[a] for a in ANGLES if counts[a]}

    def per_expression(self) -> dict[str, int]:
        counts = Counter(r.name.expression for r in self.records)
        return {e: counts[e] for e in EXPRESSIONS if counts[e]}


def _looks_like_session_folders(path: Path) -> bool:
    return path.is_dir() and any(
        child.is_dir() and len(child.name) == _FOLDER_LEN and parse_name(f"{child.name}NES.JPG") is not None
        for child in path.iterdir()
    )


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


def index_kdef(root: str | Path) -> KDEFIndex:
    """Index every image of a KDEF copy; paths are relative to the resolved ``KDEF`` folder.

    Records are sorted by file name, so the index does not depend on the file-system listing order.
    """
    base = resolve_root(root)
    index = KDEFIndex(root=base)
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        if parse_name(f"{folder.name}NES.JPG") is None:
            continue  # AKDEF and other folders
        for file in sorted(folder.iterdir()):
            rel = f"{folder.name}/{file.name}"
            name = parse_name(file.name)
            if name is None:
                index.skipped.append({"file": rel, "reason": "file name does not follow the KDEF grammar"})
            elif name.folder != folder.name.upper():
                index.skipped.append({"file": rel, "reason": f"belongs to folder {name.folder}, found in {folder.name}"})
            else:
                index.records.append(KDEFRecord(rel, name))
    return index

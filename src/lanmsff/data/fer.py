"""FER-2013 and FERPlus: reading the CSV files, the FERPlus label rules, and their data modules.

FER-2013 (Goodfellow et al., ICONIP 2013) is one CSV file, ``fer2013.csv``, with a row per face:
``emotion`` (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral), ``pixels`` (48x48
grayscale values 0..255, space separated, row by row) and ``Usage``, the official split: Training
(train), PublicTest (validation), PrivateTest (test). ``icml_face_data.csv`` holds the same rows with
a space before some column names (`` Usage``, `` pixels``); columns are found by name, so both work.

FERPlus (Barsoum et al., ICMI 2016, https://github.com/microsoft/FERPlus) relabels the same faces:
``fer2013new.csv`` has one row per row of ``fer2013.csv``, in the same order, with ``Usage``,
``Image name`` and ten votes (eight emotions, ``unknown`` and ``NF``, not a face). The votes become
labels with the authors' rules, see :func:`ferplus_distribution`.

Neither dataset is downloaded by this project. Malformed rows (wrong number of fields or pixels,
non-numeric values, an unknown ``Usage``, an emotion out of range) are skipped and reported in one
warning per file with their line numbers; a file without a usable row is a :class:`UserError`.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanmsff.data.cache import files_fingerprint
from lanmsff.data.datamodule import FaceDataset, FERDataModule
from lanmsff.errors import ConfigError, UserError, check_choice
from lanmsff.utils.progress import track

log = logging.getLogger(__name__)

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
# The ten vote columns of fer2013new.csv: the eight emotions, then 'unknown' and 'NF' (not a face).
FERPLUS_VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
# Usage values in split order: train, validation, test.
USAGES = ("Training", "PublicTest", "PrivateTest")
LABEL_MODES = ("majority", "probability")
FER_SIDE = 48
MAX_LINES_SHOWN = 20

FER2013_FILES = ("fer2013.csv", "icml_face_data.csv", "fer2013/fer2013.csv")
FERPLUS_FILES = ("fer2013new.csv",)
FER2013_SOURCE = (
    "FER-2013 is not downloaded by lanmsff: get fer2013.csv (or icml_face_data.csv) from the Kaggle challenge "
    "'challenges-in-representation-learning-facial-expression-recognition-challenge' (https://www.kaggle.com/c/"
    "challenges-in-representation-learning-facial-expression-recognition-challenge/data)"
)
FERPLUS_SOURCE = (
    "FERPlus is not downloaded by lanmsff: get fer2013new.csv from https://github.com/microsoft/FERPlus "
    "(labels only; the faces come from FER-2013's fer2013.csv)"
)


# --------------------------------------------------------------------------------------------- files


def find_csv(path: str | Path, file_names: Sequence[str], key: str, source: str) -> Path:
    """The CSV file ``path`` names: the file itself, or the first of ``file_names`` inside the folder ``path``.

    Raises :class:`UserError` saying where it looked, how to obtain the file and which setting (``key``) to change.
    """
    path = Path(path).expanduser()
    candidates = [path] if path.is_file() or path.suffix.lower() == ".csv" else [path / n for n in file_names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise UserError(f"no {file_names[0]} found (looked for {looked}). {source}; then set {key}=/path/to/it.")


class _Skip(Exception):
    """A malformed row; the message is the reason."""


def read_rows(path: Path, columns: Sequence[str]) -> tuple[np.ndarray, list[list[str] | None]]:
    """The line number and the fields named ``columns`` (in that order, stripped) of every data row of ``path``.

    Header names match without surrounding spaces or case; a row with the wrong number of fields is ``None``.
    Blank lines are ignored.
    """
    lines, rows = [], []
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f)
        try:
            header = next((row for row in reader if row), None)
            where = _column_positions(path, header, columns)
            for row in reader:
                if row:
                    lines.append(reader.line_num)
                    rows.append([row[k].strip() for k in where] if len(row) == len(header) else None)
        except csv.Error as e:
            raise UserError(f"{path}: not a readable CSV file (line {reader.line_num}: {e})") from None
    return np.array(lines, np.int64), rows


def _column_positions(path: Path, header: list[str] | None, columns: Sequence[str]) -> list[int]:
    if header is None:
        raise UserError(f"{path} is empty; expected a CSV file with the columns {', '.join(columns)}")
    names = [h.strip().lower() for h in header]
    missing = [c for c in columns if c.lower() not in names]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (its header is {','.join(header)})")
    return [names.index(c.lower()) for c in columns]


def _parse_rows(path: Path, rows: list[list[str] | None], parse: Callable[[int, list[str]], None]) -> dict[int, str]:
    """Call ``parse(i, fields)`` on every row; return ``{row index: reason}`` for the rows it rejects."""
    problems = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # older numpy only warns on unparsable pixels
        for i, fields in enumerate(track(rows, total=len(rows), description=f"Reading {path.name}")):
            try:
                if fields is None:
                    raise _Skip("wrong number of fields")
                parse(i, fields)
            except _Skip as e:
                problems[i] = str(e)
    if len(problems) == len(rows):
        raise UserError(f"{path}: no usable row ({_count_reasons(problems) or 'no data rows'}); is it the right file?")
    return problems


def warn_malformed(path: Path, lines: np.ndarray, problems: dict[int, str]) -> None:
    """One warning for all the skipped rows of ``path``: how many, why, and their first line numbers."""
    if not problems:
        return
    numbers = [str(lines[i]) for i in sorted(problems)]
    shown = ", ".join(numbers[:MAX_LINES_SHOWN]) + (", ..." if len(numbers) > MAX_LINES_SHOWN else "")
    log.warning("%s: skipped %d malformed rows (%s) at lines %s", path, len(problems), _count_reasons(problems), shown)


def _count_reasons(problems: dict[int, str]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in Counter(problems.values()).most_common())


def _usage(text: str) -> int:
    if text not in USAGES:
        raise _Skip("unknown Usage")
    return USAGES.index(text)


def _emotion(text: str) -> int:
    if not (text.isascii() and text.isdigit() and int(text) < len(FER2013_CLASSES)):
        raise _Skip(f"emotion not in 0..{len(FER2013_CLASSES) - 1}")
    return int(text)


def _pixels(text: str) -> np.ndarray:
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        raise _Skip("non-numeric pixels") from None
    if values.size != FER_SIDE * FER_SIDE:
        raise _Skip("wrong pixel count")
    if values.min() < 0 or values.max() > 255:
        raise _Skip("pixel value outside 0..255")
    return values.reshape(FER_SIDE, FER_SIDE)


def _votes(texts: Sequence[str]) -> list[float]:
    try:
        values = [float(t) for t in texts]
    except ValueError:
        raise _Skip("non-numeric votes") from None
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise _Skip("negative or non-finite votes")
    return values


@dataclass(frozen=True)
class FER2013Table:
    """Every data row of a FER-2013 CSV file, in file order (the order FERPlus aligns to).

    Attributes:
        path: the file.
        lines: ``(N,)`` line number of each row in the file (the header is line 1).
        pixels: ``(N, 48, 48)`` uint8 faces; zeros on malformed rows.
        emotions: ``(N,)`` class indices into :data:`FER2013_CLASSES`; -1 on malformed rows or when not read.
        usages: ``(N,)`` split indices into :data:`USAGES` (0 train, 1 validation, 2 test); -1 on malformed rows.
        problems: ``{row index: reason}`` for the malformed rows.
    """

    path: Path
    lines: np.ndarray
    pixels: np.ndarray
    emotions: np.ndarray
    usages: np.ndarray
    problems: dict[int, str]

    @property
    def usable(self) -> np.ndarray:
        """``(N,)`` bool: the rows that are not malformed."""
        return _usable(len(self.lines), self.problems)


@dataclass(frozen=True)
class FERPlusTable:
    """Every data row of ``fer2013new.csv``, in file order.

    Attributes:
        path, lines, usages, problems: as in :class:`FER2013Table`.
        names: ``Image name`` of each row (``""`` where FERPlus has no image).
        votes: ``(N, 10)`` vote counts in the order of :data:`FERPLUS_VOTE_COLUMNS`; zeros on malformed rows.
    """

    path: Path
    lines: np.ndarray
    usages: np.ndarray
    names: list[str]
    votes: np.ndarray
    problems: dict[int, str]


def _usable(n: int, problems: dict[int, str]) -> np.ndarray:
    usable = np.ones(n, bool)
    usable[list(problems)] = False
    return usable


def read_fer2013(path: str | Path, *, with_emotion: bool = True) -> FER2013Table:
    """Read a FER-2013 CSV file (``fer2013.csv`` or ``icml_face_data.csv``).

    Args:
        path: the CSV file.
        with_emotion: read and validate the ``emotion`` column (FERPlus uses only ``pixels`` and ``Usage``).

    Raises:
        UserError: the file has no such columns or no usable row.
    """
    path = Path(path)
    columns = ("pixels", "Usage", "emotion") if with_emotion else ("pixels", "Usage")
    lines, rows = read_rows(path, columns)
    n = len(rows)
    pixels = np.zeros((n, FER_SIDE, FER_SIDE), np.uint8)
    emotions, usages = np.full(n, -1, np.int64), np.full(n, -1, np.int64)

    def parse(i: int, fields: list[str]) -> None:
        usage = _usage(fields[1])
        emotion = _emotion(fields[2]) if with_emotion else -1
        pixels[i], emotions[i], usages[i] = _pixels(fields[0]), emotion, usage

    problems = _parse_rows(path, rows, parse)
    return FER2013Table(path, lines, pixels, emotions, usages, problems)


def read_ferplus(path: str | Path) -> FERPlusTable:
    """Read ``fer2013new.csv`` (columns ``Usage,Image name`` and the ten vote columns).

    Raises:
        UserError: the file has no such columns or no usable row.
    """
    path = Path(path)
    lines, rows = read_rows(path, ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS))
    n = len(rows)
    usages, votes, names = np.full(n, -1, np.int64), np.zeros((n, len(FERPLUS_VOTE_COLUMNS))), [""] * n

    def parse(i: int, fields: list[str]) -> None:
        usage, row_votes = _usage(fields[0]), _votes(fields[2:])
        usages[i], votes[i], names[i] = usage, row_votes, fields[1]

    problems = _parse_rows(path, rows, parse)
    return FERPlusTable(path, lines, usages, names, votes, problems)


# ---------------------------------------------------------------------------------- FERPlus labels

_NUM_EMOTIONS = len(FERPLUS_CLASSES)  # vote columns from here on are 'unknown' and 'NF'


def _without_outliers(votes: Sequence[float]) -> list[float]:
    """Drop the emotions only one tagger chose (the authors' test: ``count < 1 + float epsilon``)."""
    return [0.0 if v < 1.0 + sys.float_info.epsilon else float(v) for v in votes]


def _majority(counts: list[float], total: float) -> list[float] | None:
    top = max(counts)
    if top <= 0.5 * total:
        return None
    kept = [0.0] * len(counts)
    kept[counts.index(top)] = top
    return kept


def _top_emotions(counts: list[float], total: float) -> tuple[list[float], int]:
    """The greedy pass of the probability mode: take the most voted columns (ties together) until they hold
    75% of the votes or three of them are taken; stop at 'unknown'/'NF', kept only if nothing came before it."""
    remaining, kept, taken, covered = list(counts), [0.0] * len(counts), 0, 0.0
    while covered < 0.75 * total and taken < 3:
        top = max(remaining)
        for i in [i for i, v in enumerate(remaining) if v == top]:
            kept[i], remaining[i] = top, 0.0
            covered, taken = covered + top, taken + 1
            if i >= _NUM_EMOTIONS:
                if sum(kept) > top:
                    kept[i], taken = 0.0, taken - 1
                return kept, taken
    return kept, taken


def _probability(counts: list[float], total: float) -> list[float] | None:
    kept, taken = _top_emotions(counts, total)
    return None if sum(kept) <= 0.5 * total or taken > 3 else kept


def ferplus_distribution(votes: Sequence[float], mode: str = "majority") -> np.ndarray | None:
    """The FERPlus label of one row of votes, as a distribution over :data:`FERPLUS_CLASSES`, or ``None``.

    A re-expression of the rules of the FERPlus authors (Barsoum et al. 2016, arXiv 1608.01041;
    https://github.com/microsoft/FERPlus, ``src/ferplus.py``, ``FERPlusReader._process_data`` and
    ``load_folders``):

    1. outliers: every column (``unknown`` and ``NF`` included) with a single vote is set to 0; ``total`` is
       the sum of what is left;
    2. ``majority``: the top column wins if it holds strictly more than half of ``total``, else the row is
       unknown; the distribution is one-hot;
    3. ``probability``: columns are taken greedily by decreasing votes, tied columns together in column order,
       while the taken votes are below 75% of ``total`` and fewer than three columns are taken. Reaching
       ``unknown`` or ``NF`` ends the pass; that column is kept only if it is the first one taken. The row is
       unknown if the taken columns hold at most half of ``total`` or more than three columns (a tie) were
       taken; otherwise the distribution is the taken votes, normalised;
    4. the row is dropped (``None``) when it is unknown or its largest entry is ``unknown`` or ``NF``.

    Args:
        votes: the ten vote counts, in the order of :data:`FERPLUS_VOTE_COLUMNS`.
        mode: ``majority`` or ``probability``.
    """
    check_choice("data.label_mode", mode, LABEL_MODES)
    counts = _without_outliers(votes)
    total = sum(counts)
    kept = _majority(counts, total) if mode == "majority" else _probability(counts, total)
    if kept is None or int(np.argmax(kept)) >= _NUM_EMOTIONS:
        return None
    emotions = np.array(kept[:_NUM_EMOTIONS])
    return emotions / emotions.sum()


def ferplus_targets(votes: np.ndarray, modes: str | Sequence[str]) -> np.ndarray:
    """``(N, 8)`` float32 label distributions for ``(N, 10)`` votes; all-zero rows are the dropped ones.

    ``modes`` is one label mode for all rows or one per row (see :func:`ferplus_distribution`).
    """
    modes = [modes] * len(votes) if isinstance(modes, str) else modes
    targets = np.zeros((len(votes), _NUM_EMOTIONS), np.float32)
    for i, (row, mode) in enumerate(zip(votes.tolist(), modes, strict=True)):
        distribution = ferplus_distribution(row, mode)
        if distribution is not None:
            targets[i] = distribution
    return targets


# ------------------------------------------------------------------------------------ data modules


def resize_faces(faces: np.ndarray, image_size: int) -> np.ndarray:
    """Resize ``(N, 48, 48)`` uint8 faces to ``(N, image_size, image_size)`` (bilinear, ``cv2.INTER_LINEAR``)."""
    if faces.shape[-1] == image_size:
        return faces
    out = np.empty((len(faces), image_size, image_size), np.uint8)
    for i, face in enumerate(faces):
        out[i] = cv2.resize(face, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    return out


class DrawnLabelDataset(FaceDataset):
    """A :class:`FaceDataset` whose label is drawn from the sample's class distribution every time it is read.

    This is the FERPlus authors' ``probability`` training (``_process_target``: one label per sample and
    mini-batch, drawn from its distribution): with plain cross-entropy its expected loss is the cross-entropy
    against the soft target. ``labels`` keeps the most probable class.
    """

    def __init__(self, dataset: FaceDataset, targets: np.ndarray) -> None:
        super().__init__(dataset.images, dataset.labels, dataset.groups, dataset.transform)
        self.targets = torch.as_tensor(targets, dtype=torch.float32)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        x, _, group = super().__getitem__(i)
        return x, int(torch.multinomial(self.targets[i], 1)), group


class _FERCSVDataModule(FERDataModule):
    """What FER-2013 and FERPlus share: 48x48 faces from a CSV file, the official split, no groups."""

    group_names = ()

    def __init__(
        self,
        *,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        augment: dict[str, Any] | None = None,
        augment_on_device: bool = False,
    ) -> None:
        super().__init__(
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            augment=augment,
            augment_on_device=augment_on_device,
        )
        if image_size < 8:
            raise ConfigError(f"data.image_size={image_size} is too small")
        self.row_counts: dict[str, int] = {}
        self.sources: list[str] = []

    def _set_splits(self, faces: np.ndarray, labels: np.ndarray, usages: np.ndarray, ids: Sequence[str]) -> None:
        """Resize the kept ``faces`` and split them by ``usages`` (indices into :data:`USAGES`)."""
        for k, usage in enumerate(USAGES):
            if not np.any(usages == k):
                raise UserError(
                    f"{', '.join(self.sources)}: no usable {usage} row; the official split needs all of "
                    f"{', '.join(USAGES)}"
                )
        faces = resize_faces(faces, self.image_size)
        groups = np.zeros(len(labels), np.int64)
        parts = [(faces[usages == k], labels[usages == k], groups[usages == k]) for k in range(len(USAGES))]
        self._set_datasets(*parts)
        self.test_files = [ids[i] for i in np.flatnonzero(usages == USAGES.index("PrivateTest"))]
        self.fingerprint = files_fingerprint(self.sources, self.fingerprint_params())

    def fingerprint_params(self) -> dict[str, Any]:
        """The settings that change the data read from the CSV files."""
        return {"image_size": self.image_size, "dataset": self.dataset}

    def describe(self) -> dict[str, Any]:
        """Split sizes plus the source files and the counts of skipped rows."""
        return {**super().describe(), "sources": list(self.sources), **self.row_counts}


class FER2013DataModule(_FERCSVDataModule):
    """FER-2013 with its official split: Training = train, PublicTest = validation, PrivateTest = test.

    Args:
        root: ``fer2013.csv`` / ``icml_face_data.csv``, or a folder holding one of them.
        image_size: side of the input; the 48x48 faces are resized bilinearly (LANMSFF needs a multiple of 32).
        batch_size, num_workers, seed, augment: as in :class:`~lanmsff.data.datamodule.FERDataModule`.

    After :meth:`setup`, ``row_counts["malformed_rows"]`` is the number of skipped rows and ``test_files``
    names each test face as ``"fer2013.csv:line N"``.
    """

    class_names = FER2013_CLASSES
    dataset = "fer2013"

    def __init__(self, root: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        table = read_fer2013(find_csv(self.root, FER2013_FILES, "data.root", FER2013_SOURCE))
        warn_malformed(table.path, table.lines, table.problems)
        self.sources = [str(table.path)]
        self.row_counts = {"malformed_rows": len(table.problems)}
        keep = table.usable
        ids = [f"{table.path.name}:line {n}" for n in table.lines[keep]]
        self._set_splits(table.pixels[keep], table.emotions[keep], table.usages[keep], ids)


class FERPlusDataModule(_FERCSVDataModule):
    """FERPlus: the FER-2013 faces with the labels of ``fer2013new.csv`` (8 classes) and the same official split.

    Labels follow :func:`ferplus_distribution`. As in the authors' code, validation and test always use the
    ``majority`` rule; ``label_mode`` applies to the training rows:

    * ``majority``: each training face has its majority class;
    * ``probability``: each training face keeps the distribution of its top emotions, available as
      ``train_targets``; the training dataset draws the face's label from it every time the face is read
      (:class:`DrawnLabelDataset`), so that :class:`~lanmsff.training.FERModule`'s cross-entropy trains on the
      soft targets in expectation, as the authors' probability mode does. Its ``labels`` are the argmax.

    Rows are dropped when either file's row is malformed (line numbers in one warning per file), when
    ``Image name`` is empty, or when the rule leaves no emotion (no agreement, ``unknown`` or ``NF`` wins).

    Args:
        fer2013_csv: ``fer2013.csv`` (or a folder holding it) for the faces.
        ferplus_csv: ``fer2013new.csv`` (or a folder holding it), aligned row by row with ``fer2013_csv``.
        label_mode: ``majority`` or ``probability``.
        image_size, batch_size, num_workers, seed, augment: as in :class:`FER2013DataModule`.

    After :meth:`setup`: ``train_targets`` is ``(len(data_train), 8)`` float32, one row per training sample
    (one-hot in majority mode); ``row_counts`` has ``malformed_rows``, ``dropped_no_image`` and
    ``dropped_unknown``; ``test_files`` names each test face as ``"fer2013new.csv:line N (ferXXXXXXX.png)"``.
    """

    class_names = FERPLUS_CLASSES
    dataset = "ferplus"

    def __init__(
        self, fer2013_csv: str | Path, ferplus_csv: str | Path, *, label_mode: str = "majority", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        check_choice("data.label_mode", label_mode, LABEL_MODES)
        self.fer2013_csv, self.ferplus_csv, self.label_mode = Path(fer2013_csv), Path(ferplus_csv), label_mode
        self.train_targets: np.ndarray | None = None

    def _read(self) -> tuple[FER2013Table, FERPlusTable, np.ndarray]:
        """Both files, and the mask of the rows usable in both (warning about the others)."""
        fer = read_fer2013(
            find_csv(self.fer2013_csv, FER2013_FILES, "data.fer2013_csv", FER2013_SOURCE), with_emotion=False
        )
        plus = read_ferplus(find_csv(self.ferplus_csv, FERPLUS_FILES, "data.ferplus_csv", FERPLUS_SOURCE))
        if len(fer.lines) != len(plus.lines):
            raise UserError(
                f"{plus.path} has {len(plus.lines)} rows but {fer.path} has {len(fer.lines)}; fer2013new.csv must "
                "match fer2013.csv row by row (35,887 rows each)"
            )
        differs = fer.usable & _usable(len(plus.lines), plus.problems) & (fer.usages != plus.usages)
        problems = {**plus.problems, **{int(i): "Usage differs from fer2013.csv" for i in np.flatnonzero(differs)}}
        warn_malformed(fer.path, fer.lines, fer.problems)
        warn_malformed(plus.path, plus.lines, problems)
        self.sources = [str(fer.path), str(plus.path)]
        return fer, plus, fer.usable & _usable(len(plus.lines), problems)

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        fer, plus, usable = self._read()
        train = plus.usages == USAGES.index("Training")
        targets = ferplus_targets(plus.votes, np.where(train, self.label_mode, "majority").tolist())
        named, known = np.array([bool(name) for name in plus.names]), targets.sum(axis=1) > 0
        keep = usable & named & known
        self.row_counts = {
            "malformed_rows": int((~usable).sum()),
            "dropped_no_image": int((usable & ~named).sum()),
            "dropped_unknown": int((usable & named & ~known).sum()),
        }
        log.info("FERPlus (%s labels): %s", self.label_mode, self.row_counts)
        if not keep.any():
            raise UserError(f"{plus.path}: no row with a FERPlus label ({self.row_counts})")
        ids = [f"{plus.path.name}:line {plus.lines[i]} ({plus.names[i]})" for i in np.flatnonzero(keep)]
        labels = targets.argmax(axis=1).astype(np.int64)
        self._set_splits(fer.pixels[keep], labels[keep], plus.usages[keep], ids)
        self._set_train_targets(targets[keep & train])

    def _set_train_targets(self, targets: np.ndarray) -> None:
        """Align ``targets`` with ``data_train`` (the offline expansion repeats it); draw labels in probability mode."""
        self.train_targets = np.repeat(targets, len(self.data_train) // len(targets), axis=0)
        if self.label_mode == "probability":
            self.data_train = DrawnLabelDataset(self.data_train, self.train_targets)

    def fingerprint_params(self) -> dict[str, Any]:
        return {**super().fingerprint_params(), "label_mode": self.label_mode}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "label_mode": self.label_mode}


# ---------------------------------------------------------------------------------- lanmsff-data check


def _row_entries(table: FER2013Table | FERPlusTable, rows: Sequence[int], reason: str | None = None) -> list[dict]:
    """``{"file": "<csv>:<line>", "reason": ...}`` for ``rows`` (their own problem when ``reason`` is ``None``)."""
    return [{"file": f"{table.path.name}:{table.lines[i]}", "reason": reason or table.problems[i]} for i in rows]


def check_report(dataset: str, root: str | Path) -> dict[str, Any]:
    """The report of ``lanmsff-data check --dataset fer2013|ferplus``, in the keys of the image data sets'.

    ``root`` is the CSV file (FER-2013) or a folder holding ``fer2013.csv`` (and, for FERPlus,
    ``fer2013new.csv``). Malformed rows are ``skipped``; FERPlus rows without a label (no image name, no
    agreement, ``unknown`` or ``NF`` winning) are ``excluded``; both by file and line.
    """
    check_choice("--dataset", dataset, ("fer2013", "ferplus"))
    fer = read_fer2013(find_csv(root, FER2013_FILES, "ROOT", FER2013_SOURCE), with_emotion=dataset == "fer2013")
    skipped = _row_entries(fer, sorted(fer.problems))
    excluded: list[dict] = []
    if dataset == "fer2013":
        labels, classes, usable = fer.emotions, FER2013_CLASSES, fer.usable
    else:
        plus = read_ferplus(find_csv(root, FERPLUS_FILES, "ROOT", FERPLUS_SOURCE))
        if len(plus.lines) != len(fer.lines):
            raise UserError(f"{plus.path} has {len(plus.lines)} rows but {fer.path} has {len(fer.lines)}")
        skipped += _row_entries(plus, sorted(plus.problems))
        targets = ferplus_targets(plus.votes, "majority")
        both = fer.usable & _usable(len(plus.lines), plus.problems)
        named = np.array([bool(name) for name in plus.names])
        excluded = _row_entries(plus, np.flatnonzero(both & ~named).tolist(), "no image name") + _row_entries(
            plus, np.flatnonzero(both & named & (targets.sum(axis=1) == 0)).tolist(), "no FERPlus label (majority)"
        )
        labels, classes, usable = targets.argmax(axis=1), FERPLUS_CLASSES, both & named & (targets.sum(axis=1) > 0)
    counts = Counter(classes[k] for k in labels[usable].tolist())
    return {
        "dataset": dataset,
        "root": str(fer.path.parent),
        "images": int(usable.sum()),
        "subjects": 0,
        "per_angle": {},
        "per_expression": {c: counts[c] for c in classes if counts[c]},
        "skipped": sorted(skipped, key=lambda s: s["file"]),
        "renamed": [],
        "excluded": sorted(excluded, key=lambda s: s["file"]),
        "face_crops": {},
    }

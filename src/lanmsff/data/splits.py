"""Evaluation protocols: deterministic k-fold splits into train / val / test.

* ``subject`` (the default): person-independent k-fold; folds are groups of subjects (both sessions
  together), dealt per gender so that folds are balanced;
* ``stratified``: image-level k-fold, stratified by expression x angle (what most papers do): the
  same people are in train, validation and test, so its numbers measure recognition of known faces;
* ``cross_pose``: person-independent folds, training on ``train_angles`` and testing on
  ``test_angles``;
* ``paper``: the authors' practice, validation = test fold (early stopping and checkpoint choice
  see the test set, so its numbers are optimistic).

Except for ``paper``, validation is carved from the training part only (by subject where the
protocol is person-independent). Every assignment depends only on the records' keys and the
seed, never on the order in which files were listed. Folds are assigned over the usable images
only (:func:`lanmsff.data.cache.usable_index`), so every command sees the same list; runs record
:data:`DATA_PROTOCOL_VERSION` so that runs split under another rule are never pooled.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from lanmsff.data.kdef import KDEFIndex
from lanmsff.data.kdef_names import ANGLES, KDEFName
from lanmsff.errors import ConfigError, check_choice

PROTOCOLS = ("subject", "stratified", "cross_pose", "paper")
DEFAULT_PROTOCOL = "subject"
# 2: folds assigned after unusable images are removed (1: from file names, unusable images dropped after)
DATA_PROTOCOL_VERSION = 2
STRATIFIED_WARNING = (
    "data.protocol=stratified splits images, not people: the same people are in train, validation and "
    "test, so its numbers measure recognition of faces the model has seen (recorded as "
    "data.identities_shared=true). Use data.protocol=subject (the default) for a person-independent estimate."
)
PAPER_WARNING = (
    "data.protocol=paper uses the test fold for validation (early stopping, LR schedule and checkpoint "
    "choice), as the authors' code does; its test numbers are optimistic. Use protocol=subject for an "
    "honest, person-independent estimate."
)


@dataclass(frozen=True)
class Split:
    """Indices into the record list for each part."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def deal(units: Sequence[Hashable], strata: Sequence[Hashable], parts: int, rng: np.random.Generator) -> dict:
    """Assign each unit to one of ``parts`` groups, shuffled within strata and dealt round-robin.

    Consecutive strata continue the deal where the previous one stopped, so group sizes differ by at
    most one overall and by at most one within every stratum.
    """
    by_stratum: dict[Hashable, list] = defaultdict(list)
    for unit, stratum in zip(units, strata, strict=True):
        by_stratum[stratum].append(unit)
    assignment, offset = {}, 0
    for stratum in sorted(by_stratum, key=repr):
        members = sorted(by_stratum[stratum], key=repr)
        for i, j in enumerate(rng.permutation(len(members))):
            assignment[members[j]] = (offset + i) % parts
        offset += len(members)
    return assignment


@dataclass(frozen=True)
class SplitSpec:
    """Which split of a KDEF copy a run uses: the protocol and its settings (the ``data.*`` keys).

    Args:
        protocol: ``subject`` (default), ``stratified``, ``cross_pose`` or ``paper`` (module docstring).
        num_folds: number of folds (at least 2).
        fold: the test fold, ``0 <= fold < num_folds``.
        seed: the seed of the fold assignment.
        val_fraction: share of the training part used for validation (not for ``paper``).
        train_angles, test_angles: ``cross_pose`` only: the camera angles to train and to test on.

    Settings no split can satisfy raise :class:`ConfigError` naming the ``data.*`` key.
    """

    protocol: str = DEFAULT_PROTOCOL
    num_folds: int = 10
    fold: int = 0
    seed: int = 0
    val_fraction: float = 0.1
    train_angles: tuple[str, ...] | None = None
    test_angles: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for key in ("train_angles", "test_angles"):
            value = getattr(self, key)
            object.__setattr__(self, key, tuple(value) if value else None)
        self._validate()

    def _validate(self) -> None:
        check_choice("data.protocol", self.protocol, PROTOCOLS)
        if self.num_folds < 2:
            raise ConfigError(f"data.num_folds={self.num_folds} must be at least 2")
        if not 0 <= self.fold < self.num_folds:
            raise ConfigError(f"data.fold={self.fold} must satisfy 0 <= fold < data.num_folds={self.num_folds}")
        if self.protocol != "paper" and not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={self.val_fraction} must lie strictly between 0 and 1")
        if self.protocol == "cross_pose":
            self._validate_cross_pose()

    def _validate_cross_pose(self) -> None:
        if not self.train_angles or not self.test_angles:
            raise ConfigError(
                "data.protocol=cross_pose needs data.train_angles and data.test_angles, e.g. [S, HL, HR] and [FL, FR]"
            )
        for key, angles in (("data.train_angles", self.train_angles), ("data.test_angles", self.test_angles)):
            for angle in angles:
                check_choice(key, angle, ANGLES)
        overlap = sorted(set(self.train_angles) & set(self.test_angles))
        if overlap:
            raise ConfigError(
                f"data.test_angles overlaps data.train_angles in {overlap}; cross_pose needs disjoint angle sets"
            )

    @property
    def person_independent(self) -> bool:
        """Whether no person is in two of train, validation and test."""
        return self.protocol in ("subject", "cross_pose")

    @property
    def identities_shared(self) -> bool:
        """Whether the same people appear in training and test (``stratified``, ``paper``)."""
        return not self.person_independent

    @property
    def warning(self) -> str | None:
        """What a user must be told about the protocol's numbers before it runs, if anything."""
        if self.protocol == "paper":
            return PAPER_WARNING
        return STRATIFIED_WARNING if self.identities_shared else None

    @property
    def selection(self) -> str:
        """Which data chose the epoch, the LR schedule and the checkpoint: ``test-fold`` for ``paper``."""
        return "test-fold" if self.protocol == "paper" else "validation"


def _stratum(subject: str) -> str:
    """The stratum folds are balanced over: the gender letter that starts KDEF's and RaFD's subjects."""
    return subject[0]


def _folds(names: Sequence[KDEFName], spec: SplitSpec) -> tuple[list[Hashable], dict[Hashable, int]]:
    """The unit of each record (its subject, or its index) and the fold of every unit."""
    rng = np.random.default_rng(spec.seed)
    if spec.person_independent:
        units: list[Hashable] = [n.subject for n in names]
        subjects = sorted(set(units))
        if len(subjects) < spec.num_folds:
            raise ConfigError(
                f"data.num_folds={spec.num_folds} exceeds the number of subjects ({len(subjects)}) "
                f"for protocol={spec.protocol}"
            )
        return units, deal(subjects, [_stratum(s) for s in subjects], spec.num_folds, rng)
    units = list(range(len(names)))
    return units, deal(units, [(n.expression, n.angle) for n in names], spec.num_folds, rng)


def _validation_units(names: Sequence[KDEFName], spec: SplitSpec, rest: list[Hashable]) -> set[Hashable]:
    """The units of the training part that validate: one of ``1 / val_fraction`` groups, dealt per stratum."""
    parts = max(2, round(1.0 / spec.val_fraction))
    if spec.person_independent and len(rest) < 2:
        raise ConfigError(
            f"data.protocol={spec.protocol} with data.num_folds={spec.num_folds} leaves {len(rest)} person outside "
            "the test fold: validation and training need different people; use more people or fewer folds"
        )
    if spec.person_independent:
        strata = [_stratum(str(u)) for u in rest]
    else:
        strata = [(names[int(u)].expression, names[int(u)].angle) for u in rest]
    val_rng = np.random.default_rng([spec.seed, spec.fold])
    return {u for u, g in deal(rest, strata, parts, val_rng).items() if g == 0}


def make_split(names: Sequence[KDEFName], spec: SplitSpec) -> Split:
    """Split KDEF records (given by their parsed names) according to ``spec``."""
    units, folds = _folds(names, spec)
    test_units = {u for u, f in folds.items() if f == spec.fold}
    if spec.protocol == "paper":
        warnings.warn(PAPER_WARNING, stacklevel=2)
        val_units = test_units
    else:
        val_units = _validation_units(names, spec, sorted((u for u in folds if u not in test_units), key=repr))
    cross_pose = spec.protocol == "cross_pose"
    train_ok = set(spec.train_angles) if cross_pose and spec.train_angles else None  # None: every view
    test_ok = set(spec.test_angles) if cross_pose and spec.test_angles else None
    train, val, test = [], [], []
    for i, (unit, name) in enumerate(zip(units, names, strict=True)):
        trains, tests = train_ok is None or name.angle in train_ok, test_ok is None or name.angle in test_ok
        if unit in test_units and tests:
            test.append(i)
        if unit in val_units and trains:
            val.append(i)
        elif unit not in test_units and unit not in val_units and trains:
            train.append(i)
    return Split(np.array(train, dtype=np.int64), np.array(val, dtype=np.int64), np.array(test, dtype=np.int64))


def split_records(index: KDEFIndex, spec: SplitSpec, angles: Sequence[str] | None = None) -> tuple:
    """``(records kept, split)``: the index's records of ``angles`` (all when ``None``) split by ``spec``.

    Raises :class:`ConfigError` when no record has those angles.
    """
    kept = [r for r in index.records if angles is None or r.name.angle in angles]
    if not kept:
        raise ConfigError(f"no usable KDEF images under {index.root} for data.angles={list(angles or [])}")
    return kept, make_split([r.name for r in kept], spec)


def official_split(parts: Sequence[str], strata: Sequence[Hashable], val_fraction: float, seed: int) -> Split:
    """The split of a data set that ships its own train and test sets (RAF-DB, AffectNet).

    ``parts`` names each record's set (``train`` or ``test``); validation is carved from ``train``: one of
    ``1 / val_fraction`` groups dealt per stratum (the class), so it depends only on the records and the seed.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
    train = [i for i, part in enumerate(parts) if part == "train"]
    groups = deal(train, [strata[i] for i in train], max(2, round(1.0 / val_fraction)), np.random.default_rng(seed))
    val = sorted(i for i, g in groups.items() if g == 0)
    fit = sorted(i for i, g in groups.items() if g != 0)
    test = [i for i, part in enumerate(parts) if part == "test"]
    return Split(*(np.array(x, dtype=np.int64) for x in (fit, val, test)))


def assignment_hash(files: Sequence[str]) -> str:
    """A hash of which files a split holds (their sorted names): equal for two runs tested on the same people."""
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()

"""Evaluation protocols: deterministic k-fold splits into train / val / test.

* ``stratified``: image-level k-fold, stratified by expression x angle (what most papers do);
* ``subject``: person-independent k-fold; folds are groups of subjects (both sessions together),
  dealt per gender so that folds are balanced;
* ``cross_pose``: person-independent folds, training on ``train_angles`` and testing on
  ``test_angles``;
* ``paper``: the authors' practice, validation = test fold (early stopping and checkpoint choice
  see the test set, so its numbers are optimistic).

Except for ``paper``, validation is carved from the training part only (by subject where the
protocol is person-independent). Every assignment depends only on the records' keys and the
seed, never on the order in which files were listed.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from lanmsff.data.kdef_names import ANGLES, KDEFName
from lanmsff.errors import ConfigError, check_choice

PROTOCOLS = ("stratified", "subject", "cross_pose", "paper")
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


def validate_protocol(
    protocol: str,
    num_folds: int,
    fold: int,
    val_fraction: float,
    train_angles: Sequence[str] | None = None,
    test_angles: Sequence[str] | None = None,
) -> None:
    """Raise :class:`ConfigError` (naming the ``data.*`` key) for settings no split can satisfy."""
    check_choice("data.protocol", protocol, PROTOCOLS)
    if num_folds < 2:
        raise ConfigError(f"data.num_folds={num_folds} must be at least 2")
    if not 0 <= fold < num_folds:
        raise ConfigError(f"data.fold={fold} must satisfy 0 <= fold < data.num_folds={num_folds}")
    if protocol != "paper" and not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction} must lie strictly between 0 and 1")
    if protocol == "cross_pose":
        if not train_angles or not test_angles:
            raise ConfigError(
                "data.protocol=cross_pose needs data.train_angles and data.test_angles, e.g. [S, HL, HR] and [FL, FR]"
            )
        for key, angles in (("data.train_angles", train_angles), ("data.test_angles", test_angles)):
            for angle in angles:
                check_choice(key, angle, ANGLES)
        overlap = sorted(set(train_angles) & set(test_angles))
        if overlap:
            raise ConfigError(
                f"data.test_angles overlaps data.train_angles in {overlap}; cross_pose needs disjoint angle sets"
            )


def make_split(
    names: Sequence[KDEFName],
    *,
    protocol: str = "stratified",
    num_folds: int = 10,
    fold: int = 0,
    seed: int = 0,
    val_fraction: float = 0.1,
    train_angles: Sequence[str] | None = None,
    test_angles: Sequence[str] | None = None,
) -> Split:
    """Split KDEF records (given by their parsed names) according to ``protocol``."""
    validate_protocol(protocol, num_folds, fold, val_fraction, train_angles, test_angles)
    rng = np.random.default_rng(seed)
    person_independent = protocol in ("subject", "cross_pose")
    if person_independent:
        units = [n.subject for n in names]
        subjects = sorted(set(units))
        if len(subjects) < num_folds:
            raise ConfigError(
                f"data.num_folds={num_folds} exceeds the number of subjects ({len(subjects)}) for protocol={protocol}"
            )
        folds = deal(subjects, [s[0] for s in subjects], num_folds, rng)
    else:
        units = list(range(len(names)))
        folds = deal(units, [(n.expression, n.angle) for n in names], num_folds, rng)

    test_units = {u for u, f in folds.items() if f == fold}
    rest = sorted((u for u in folds if u not in test_units), key=repr)
    if protocol == "paper":
        warnings.warn(PAPER_WARNING, stacklevel=2)
        val_units = test_units
    else:
        parts = max(2, round(1.0 / val_fraction))
        strata = [u[0] for u in rest] if person_independent else [(names[u].expression, names[u].angle) for u in rest]
        val_rng = np.random.default_rng([seed, fold])
        val_units = {u for u, g in deal(rest, strata, parts, val_rng).items() if g == 0}

    train_ok = set(train_angles) if protocol == "cross_pose" else set(ANGLES)
    test_ok = set(test_angles) if protocol == "cross_pose" else set(ANGLES)
    train, val, test = [], [], []
    for i, (unit, name) in enumerate(zip(units, names, strict=True)):
        if unit in test_units and name.angle in test_ok:
            test.append(i)
        if unit in val_units and name.angle in train_ok:
            val.append(i)
        elif unit not in test_units and unit not in val_units and name.angle in train_ok:
            train.append(i)
    return Split(np.array(train, dtype=np.int64), np.array(val, dtype=np.int64), np.array(test, dtype=np.int64))

"""The Radboud Faces Database (RaFD, Langner et al. 2010): file names, indexing, a synthetic tree, the data module.

RaFD ships its photographs in one folder (some copies sort them into sub-folders; every folder below the root
is read), named ``Rafd<angle>_<id>_<ethnicity>_<gender>_<expression>_<gaze>.jpg``, for example
``Rafd090_01_Caucasian_female_angry_frontal.jpg``:

* ``angle``: the camera, ``000``, ``045``, ``090`` (frontal), ``135``, ``180``. They are mapped onto KDEF's view
  codes (:data:`VIEWS`): ``000`` and ``045`` show the model's right side (full and half right profile, KDEF's
  ``FR`` and ``HR``), ``135`` and ``180`` the left side (``HL``, ``FL``), as RaFD's FAQ describes the cameras;
* ``id``: the model (two digits, 01..73; 67 of them); ids are unique across genders;
* ``ethnicity``: ``Caucasian`` or ``Moroccan`` for adults, ``Kid`` for the children (recorded as the subgroup
  ``age: child``);
* ``gender``: ``female`` or ``male``;
* ``expression``: ``angry``, ``contemptuous``, ``disgusted``, ``fearful``, ``happy``, ``neutral``, ``sad``,
  ``surprised``;
* ``gaze``: ``frontal``, ``left``, ``right``: three near-identical shots of one pose, which is why splits are
  person-independent by default.

The subject of ``Rafd090_01_Caucasian_female_...`` is ``F01`` (gender letter first, as KDEF's), so KDEF's
protocols (:mod:`lanmsff.data.splits`) deal folds balanced by gender. Contempt, which KDEF lacks, is dropped
(the 7 KDEF classes; dropped images counted as ``excluded``) or kept (8 classes) by ``contempt``.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
from filelock import FileLock

from lanmsff.data.datamodule import KDEFDataModule
from lanmsff.data.kdef import IMAGE_SUFFIXES, KDEFIndex, KDEFRecord
from lanmsff.data.kdef_names import ANGLES, KDEFName
from lanmsff.data.synthetic import MANIFEST, _clear_generated_tree, _read_manifest, draw_all, render_face
from lanmsff.errors import UserError, check_choice
from lanmsff.utils.io import atomic_write_bytes, atomic_write_text

# In KDEF's class order, contempt last: the first seven labels are KDEF's.
EXPRESSIONS = ("fearful", "angry", "disgusted", "happy", "neutral", "sad", "surprised", "contemptuous")
KDEF_EXPRESSION = dict(zip(EXPRESSIONS, ("AF", "AN", "DI", "HA", "NE", "SA", "SU", "NE"), strict=True))
CAMERA_ANGLES = (0, 45, 90, 135, 180)
VIEWS = {0: "FR", 45: "HR", 90: "S", 135: "HL", 180: "FL"}  # RaFD camera -> KDEF view code
GAZES = ("frontal", "left", "right")
GENDERS = {"female": "F", "male": "M"}
CHILD = "Kid"
CONTEMPT_MODES = ("drop", "keep")
RAFD_HELP = (
    "RaFD is licensed for research and is not downloaded by this project: request access at "
    "https://rafd.socsci.ru.nl, unpack the images into one folder and pass it with data.root=/path/to/RaFD. "
    "To try the framework without RaFD, use data=rafd_synthetic."
)

_NAME = re.compile(
    r"^Rafd(?P<angle>000|045|090|135|180)_(?P<id>\d{2})_(?P<ethnicity>[A-Za-z]+)_(?P<gender>female|male)_"
    r"(?P<expression>" + "|".join(EXPRESSIONS) + r")_(?P<gaze>" + "|".join(GAZES) + r")\.jpe?g$",
    re.IGNORECASE,
)


@dataclass(frozen=True, order=True)
class RafdName:
    """One parsed RaFD file name (see the module docstring); ``angle`` is the KDEF view code of the camera."""

    camera: int
    identity: int
    ethnicity: str
    gender: str
    expression: str
    gaze: str

    @property
    def subject(self) -> str:
        return f"{self.gender}{self.identity:02d}"

    @property
    def angle(self) -> str:
        return VIEWS[self.camera]

    @property
    def angle_index(self) -> int:
        return ANGLES.index(self.angle)

    @property
    def label(self) -> int:
        return EXPRESSIONS.index(self.expression)

    @property
    def subgroups(self) -> dict[str, str]:
        """The people's groups the file name tells: gender, age (adult or child) and, for adults, ethnicity."""
        gender = "female" if self.gender == "F" else "male"
        if self.ethnicity == CHILD:
            return {"gender": gender, "age": "child"}
        return {"gender": gender, "age": "adult", "ethnicity": self.ethnicity}

    @property
    def filename(self) -> str:
        gender = "female" if self.gender == "F" else "male"
        return f"Rafd{self.camera:03d}_{self.identity:02d}_{self.ethnicity}_{gender}_{self.expression}_{self.gaze}.jpg"


def parse_name(filename: str) -> RafdName | None:
    """Parse a RaFD file name (case-insensitive); ``None`` when it does not follow the grammar."""
    match = _NAME.match(filename)
    if match is None:
        return None
    ethnicity = match["ethnicity"].capitalize()
    return RafdName(
        camera=int(match["angle"]),
        identity=int(match["id"]),
        ethnicity=ethnicity,
        gender=GENDERS[match["gender"].lower()],
        expression=match["expression"].lower(),
        gaze=match["gaze"].lower(),
    )


def _files(base: Path) -> list[tuple[str, os.DirEntry]]:
    """Every directory entry below ``base`` (folders descended), as ``(relative path, entry)``, sorted by path."""
    found, folders = [], [base]
    while folders:
        folder = folders.pop()
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                folders.append(Path(entry.path))
            else:
                found.append((Path(entry.path).relative_to(base).as_posix(), entry))
    return sorted(found, key=lambda item: item[0])


def index_rafd(root: str | Path, *, contempt: str = "drop") -> KDEFIndex:
    """Index every image below ``root``; defects (stray files, zero-byte files, names off the grammar,
    duplicates) are skipped with their reason, contempt images listed as excluded when ``contempt=drop``."""
    check_choice("data.contempt", contempt, CONTEMPT_MODES)
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"RaFD data root not found: {base} is not a folder. {RAFD_HELP}")
    kept = EXPRESSIONS if contempt == "keep" else EXPRESSIONS[:-1]
    index = KDEFIndex(root=base, dataset="rafd", expressions=kept)
    seen: dict[tuple, str] = {}
    for rel, entry in _files(base):
        name, reason = None, None
        try:
            if not entry.is_file():
                reason = "not a regular file"
            elif not entry.name.lower().endswith(IMAGE_SUFFIXES):
                reason = "stray file (not a JPEG image)"
            elif entry.stat().st_size == 0:
                reason = "zero-byte file"
            elif (name := parse_name(entry.name)) is None:
                reason = "file name does not follow the RaFD grammar Rafd<angle>_<id>_<ethnicity>_<gender>_..."
        except OSError as err:
            reason = f"cannot be read ({err.strerror or err})"
        if reason is not None:
            index.skipped.append({"file": rel, "reason": reason})
            continue
        key = (name.camera, name.identity, name.expression, name.gaze)
        if key in seen:
            index.skipped.append({"file": rel, "reason": f"duplicate of {seen[key]}"})
            continue
        seen[key] = rel
        if name.expression not in kept:
            index.excluded.append({"file": rel, "reason": "contempt (data.contempt=drop)"})
            continue
        index.records.append(KDEFRecord(rel, name))
    if not index.records and not index.excluded:
        raise UserError(f"No RaFD images (Rafd090_01_Caucasian_female_angry_frontal.jpg ...) under {base}. {RAFD_HELP}")
    return index


class RafdDataModule(KDEFDataModule):
    """RaFD with KDEF's protocols (person-independent ``subject`` folds by default) and per-view metrics under
    KDEF's view names.

    Args:
        root: the folder holding the RaFD images (sub-folders are read too).
        contempt: ``drop`` (KDEF's 7 classes; contempt images counted as excluded) or ``keep`` (8 classes).
        everything else: as :class:`~lanmsff.data.datamodule.KDEFDataModule`.
    """

    group_names = ANGLES
    dataset = "rafd"

    def __init__(self, root: str | Path, *, contempt: str = "drop", **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        check_choice("data.contempt", contempt, CONTEMPT_MODES)
        self.contempt = contempt
        self.class_names = EXPRESSIONS if contempt == "keep" else EXPRESSIONS[:-1]
        self.indexer = partial(index_rafd, contempt=contempt)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "contempt": self.contempt}


# ------------------------------------------------------------------------------------------ synthetic
SYNTHETIC_ETHNICITIES = ("Caucasian", "Caucasian", "Moroccan", CHILD)  # person k has the (k-1) % 4th


def synthetic_names(identities: int, gazes: Sequence[str] = GAZES) -> list[RafdName]:
    """All file names of a synthetic tree: ``identities`` people (female, male, ...), ethnicities cycling through
    :data:`SYNTHETIC_ETHNICITIES`, every camera, expression and gaze of ``gazes``."""
    if not 1 <= identities <= 70:
        raise UserError(f"identities must be between 1 and 70; got {identities}")
    for gaze in gazes:
        check_choice("gazes", gaze, GAZES)
    people = [(k, "F" if k % 2 else "M", SYNTHETIC_ETHNICITIES[(k - 1) % 4]) for k in range(1, identities + 1)]
    return [
        RafdName(camera, k, ethnicity, gender, expression, gaze)
        for k, gender, ethnicity in people
        for camera in CAMERA_ANGLES
        for expression in EXPRESSIONS
        for gaze in gazes
    ]


def _write_pose(args: tuple[list[RafdName], str, int]) -> None:
    """Draw one pose with the KDEF face renderer (contempt is drawn as neutral) and write its gaze shots: the same
    drawing at JPEG qualities that differ by file name, near-duplicates as RaFD's gaze shots are."""
    names, folder, seed = args
    name = names[0]
    person = KDEFName("A", name.gender, (name.identity - 1) // 2 + 1, KDEF_EXPRESSION[name.expression], name.angle)
    bgr = cv2.cvtColor(render_face(person, seed), cv2.COLOR_RGB2BGR)
    for shot in names:
        quality = 88 + zlib.crc32(shot.filename.encode()) % 8
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 image
            raise RuntimeError(f"could not encode {shot.filename}")
        atomic_write_bytes(Path(folder) / shot.filename, buf.tobytes())


def generate_rafd(
    out: str | Path, identities: int = 8, *, gazes: Sequence[str] = GAZES, seed: int = 0, workers: int | None = None
) -> Path:
    """Write a synthetic tree in RaFD's layout (one folder ``<out>/RaFD``) unless an identical one is there.

    The manifest is written last and a lock file serialises processes, as for the synthetic KDEF tree.
    """
    names = synthetic_names(identities, gazes)
    root = Path(out) / "RaFD"
    spec = {"generator": "rafd", "identities": identities, "gazes": list(gazes), "seed": seed, "images": len(names)}
    manifest = Path(out) / f"RaFD_{MANIFEST}"
    if _read_manifest(manifest) == spec:
        return root
    Path(out).mkdir(parents=True, exist_ok=True)
    with FileLock(Path(out) / ".RaFD.lock"):
        if _read_manifest(manifest) != spec:
            _clear_generated_tree(root, manifest)
            root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(manifest, json.dumps({**spec, "complete": False}))
            poses: dict[tuple, list[RafdName]] = {}
            for name in names:
                poses.setdefault((name.camera, name.identity, name.expression), []).append(name)
            jobs = [(shots, str(root), seed) for shots in poses.values()]
            draw_all(_write_pose, jobs, workers, f"Drawing {len(jobs)} synthetic RaFD poses", chunksize=4)
            atomic_write_text(manifest, json.dumps(spec, indent=2))
    return root


class SyntheticRafdDataModule(RafdDataModule):
    """:class:`RafdDataModule` on a generated tree in RaFD's layout, written on first use (:func:`generate_rafd`)."""

    dataset = "rafd_synthetic"

    def __init__(
        self,
        root: str | Path,
        *,
        identities: int = 8,
        gazes: Sequence[str] | None = None,
        generator_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        self.out = Path(root)
        super().__init__(self.out / "RaFD", **kwargs)
        self.identities, self.generator_seed = identities, generator_seed
        self.gazes = tuple(gazes) if gazes else GAZES

    def prepare_data(self) -> None:
        generate_rafd(self.out, self.identities, gazes=self.gazes, seed=self.generator_seed)

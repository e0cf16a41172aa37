"""Preprocessing KDEF once: faces decoded, cropped and resized by worker processes, kept in a cache file.

The cache file ``<cache_dir>/kdef_<key>.npz`` holds the uint8 faces, the relative path and crop
method of each, and the files that failed with their reasons. Its key hashes the file list (paths,
sizes, modification times), the preprocessing parameters (image size, crop mode, and with
``detect`` the margin, the detector and the alignment) and :data:`CACHE_VERSION`, so any change of
an input or a parameter builds a new file. A cache file that cannot be read, or whose stored key or
shapes disagree, is rebuilt with a message and never trusted. Writes are atomic.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from lanmsff.data.detectors import MTCNNDetector, weights_dir
from lanmsff.data.faces import (
    DEFAULT_MARGIN,
    LEGACY_FACE_DETECTOR,
    FaceDetector,
    UnreadableImage,
    check_detector,
    check_not_placeholder,
    face_square,
    make_detector,
    preprocess_file,
    read_image,
    to_gray,
)
from lanmsff.data.kdef import KDEFIndex, KDEFRecord, index_kdef
from lanmsff.utils.io import atomic_write, atomic_write_json
from lanmsff.utils.progress import track

log = logging.getLogger(__name__)
CACHE_VERSION = 1
SCREEN_VERSION = 1  # of the usability rule (screen_file); a change rebuilds every screening cache file
_IN_PROCESS_BELOW = 64  # files; fewer are not worth starting worker processes


@dataclass
class FaceArray:
    """Preprocessed faces of a list of records, and the files that could not be used."""

    images: np.ndarray  # (N, S, S) uint8, aligned with paths
    paths: list[str]
    methods: list[str]
    failures: dict[str, str]
    key: str = ""  # the cache key: a fingerprint of the dataset as used (files and preprocessing)

    def rows(self, paths: Sequence[str]) -> np.ndarray:
        """Row indices of ``paths`` in :attr:`images`."""
        position = {p: i for i, p in enumerate(self.paths)}
        return np.array([position[p] for p in paths], dtype=np.int64)

    def crop_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.methods).items()))


def cache_key(root: Path, records: Sequence[KDEFRecord], params: dict) -> str:
    """Hash of the inputs (path, size, mtime of every file, in path order) and the preprocessing parameters.

    It is also the dataset's fingerprint in a run's record (``summary.json``: ``data.fingerprint``).
    """
    ordered = sorted(records, key=lambda r: r.path)  # the order files were listed in does not matter
    return _fingerprint(params, [(r.path, root / r.path) for r in ordered])


def _fingerprint(params: dict[str, Any], files: Sequence[tuple[str, Path]]) -> str:
    """SHA-256 of :data:`CACHE_VERSION`, ``params`` and the size and mtime of each ``(label, path)`` in order."""
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "params": params}, sort_keys=True).encode())
    for label, path in files:
        stat = path.stat()
        digest.update(f"{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


_DETECTORS: dict[str, FaceDetector | MTCNNDetector] = {}  # one of each per process, made on first use


@dataclass(frozen=True)
class Job:
    """What one worker needs to preprocess one file."""

    path: str
    angle: str
    image_size: int
    mode: str
    margin: float
    detector: str
    align: bool
    box: tuple[int, int, int, int] | None = None  # the annotated face (x, y, w, h), when the data set gives it


def _crop_annotated(job: Job) -> tuple[np.ndarray, str]:
    """The face of an annotated box (AffectNet's), grown by the margin, as a square of ``image_size``."""
    gray = to_gray(read_image(job.path))
    check_not_placeholder(gray)
    face = face_square(gray, job.box, job.margin)
    return cv2.resize(face, (job.image_size, job.image_size), interpolation=cv2.INTER_AREA), "annotation"


def _work(job: Job) -> tuple[np.ndarray | None, str]:
    if job.box is not None and job.mode != "none":
        try:
            return _crop_annotated(job)
        except UnreadableImage as err:
            return None, str(err)
    detector = None
    if job.mode == "detect":
        if job.detector not in _DETECTORS:
            _DETECTORS[job.detector] = make_detector(job.detector)
        detector = _DETECTORS[job.detector]
    try:
        return preprocess_file(
            job.path,
            job.image_size,
            angle=job.angle,
            mode=job.mode,
            margin=job.margin,
            detector=detector,
            align=job.align,
        )
    except UnreadableImage as err:
        return None, str(err)


def _init_worker() -> None:
    """One thread per worker process: the processes already use every core."""
    torch.set_num_threads(1)


def _map(work: Any, jobs: Sequence[Any], workers: int, description: str) -> list[Any]:
    """``work`` over ``jobs`` in worker processes (in this one for few jobs), with a progress bar."""
    if workers > 1 and len(jobs) >= _IN_PROCESS_BELOW:
        with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
            return list(track(pool.map(work, jobs, chunksize=16), total=len(jobs), description=description))
    return list(track(map(work, jobs), total=len(jobs), description=description))


def _build(root: Path, records: Sequence[KDEFRecord], job: Job, workers: int) -> FaceArray:
    jobs = [replace(job, path=str(root / r.path), angle=r.name.angle, box=_box(r)) for r in records]
    results = _map(_work, jobs, workers, f"Preprocessing {len(jobs)} faces")
    images, paths, methods, failures = [], [], [], {}
    for record, (image, note) in zip(records, results, strict=True):
        if image is None:
            failures[record.path] = note
        else:
            images.append(image)
            paths.append(record.path)
            methods.append(note)
    stacked = np.stack(images) if images else np.empty((0, job.image_size, job.image_size), np.uint8)
    return FaceArray(stacked, paths, methods, failures)


def _box(record: KDEFRecord) -> tuple[int, int, int, int] | None:
    """The record's annotated face box ``(x, y, w, h)``, if its data set gives one."""
    box = getattr(record.name, "box", None)
    return None if box is None else tuple(int(v) for v in box)


def _save(path: Path, key: str, faces: FaceArray) -> None:
    arrays = {
        "key": np.array(key),
        "images": faces.images,
        "paths": np.array(faces.paths, dtype=str),
        "methods": np.array(faces.methods, dtype=str),
        "failed_paths": np.array(list(faces.failures), dtype=str),
        "failed_reasons": np.array(list(faces.failures.values()), dtype=str),
    }
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _load(path: Path, key: str, image_size: int) -> FaceArray:
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != key:
            raise ValueError("its key does not match its name")
        images = data["images"]
        paths, methods = data["paths"].tolist(), data["methods"].tolist()
        failures = dict(zip(data["failed_paths"].tolist(), data["failed_reasons"].tolist(), strict=True))
    if images.dtype != np.uint8 or images.shape[1:] != (image_size, image_size) or len(images) != len(paths):
        raise ValueError(f"unexpected array {images.dtype} {images.shape}")
    return FaceArray(images, paths, methods, failures)


def preprocess_records(
    root: Path,
    records: Sequence[KDEFRecord],
    *,
    image_size: int = 64,
    mode: str = "detect",
    margin: float = DEFAULT_MARGIN,
    detector: str = LEGACY_FACE_DETECTOR,
    align: bool = False,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> FaceArray:
    """Faces for ``records`` (paths relative to ``root``), from the cache when it is valid.

    With ``mode="detect"``, ``detector`` (``cnn`` or ``haar``; the default is what configs written before
    the choice existed used) finds the face and ``align`` levels the eyes (CNN landmarks).
    """
    workers = workers or len(os.sched_getaffinity(0))
    params = {"image_size": image_size, "mode": mode, "margin": margin if mode == "detect" else None}
    if mode == "detect":
        if check_detector(detector) == "cnn":
            weights_dir()  # a missing weights package is reported here, before any worker starts
        align = bool(align) and detector == "cnn"  # only the CNN gives the landmarks to align with
        params.update(detector=detector, align=align)
    boxes = [(r.path, _box(r)) for r in records if _box(r) is not None]
    if boxes:  # annotated faces: the boxes come from an annotation file, so they are part of the key
        params["boxes"] = hashlib.sha256(json.dumps(sorted(boxes)).encode()).hexdigest()
        params["margin"] = margin
    key = cache_key(root, records, params)
    path = Path(cache_dir) / f"kdef_{key[:24]}.npz" if cache_dir else None
    if path is not None and (faces := _cached(path, key, image_size)) is not None:
        return faces
    with building_lock(path):
        if path is not None and (faces := _cached(path, key, image_size, quiet=True)) is not None:
            return faces  # another job built it while this one waited
        job = Job("", "S", image_size, mode, margin, detector, align)
        faces = _build(root, records, job, workers)
        faces.key = key
        if path is not None:
            _save(path, key, faces)
            log.info("Wrote preprocessed faces to cache %s", path)
    return faces


def _cached(path: Path, key: str, image_size: int, *, quiet: bool = False) -> FaceArray | None:
    """The faces of a valid cache file (``None`` when it is missing or cannot be trusted)."""
    if not path.exists():
        return None
    try:
        faces = _load(path, key, image_size)
    except Exception as err:  # corrupt, truncated, or written by another version
        if not quiet:
            log.warning("Cache file %s cannot be trusted (%s); rebuilding it", path, err)
        return None
    log.info("Loaded %d preprocessed faces from cache %s", len(faces.paths), path)
    faces.key = key
    return faces


LOCK_LEASE_S = 60.0  # a lock whose holder stopped refreshing it this long ago (killed) is taken over


@contextlib.contextmanager
def building_lock(path: Path | None) -> Iterator[None]:
    """Hold ``<cache file>.lock`` while building ``path``, so that of the jobs that start together on
    one cache folder one builds and the others wait and load its file.

    It is a lease (filelock's ``SoftFileLease``): a marker file created with ``O_EXCL`` and refreshed by
    a heartbeat thread, which holds on network file systems (NFS, Lustre, GPFS) where ``flock``
    may be missing or local to a node; a holder that was killed stops refreshing it, and a waiting job
    takes it over after :data:`LOCK_LEASE_S` seconds.
    """
    if path is None:
        yield
        return
    from filelock import SoftFileLease, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = SoftFileLease(f"{path}.lock", lease_duration=LOCK_LEASE_S)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("Another job is building %s; waiting for it (lock %s.lock)", path.name, path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def files_fingerprint(paths: Sequence[str | Path], params: dict[str, Any]) -> str:
    """A fingerprint of data read from whole files (FER-2013's CSVs): name, size and mtime of each, and the
    settings that change what is read from them."""
    return _fingerprint(params, [(path.name, path) for path in sorted(Path(p) for p in paths)])


def screen_file(path: str | Path) -> str | None:
    """Why the image at ``path`` cannot be used (``None`` when it can): the one usability rule.

    The file is decoded as preprocessing decodes it (grayscale, at half size) and checked for the
    black placeholder images of some KDEF copies; see :func:`lanmsff.data.faces.decode_image` for
    zero-byte, truncated and undecodable files.
    """
    try:
        check_not_placeholder(read_image(path, reduce=2))
    except UnreadableImage as err:
        return str(err)
    return None


def screen_records(
    root: Path, records: Sequence[KDEFRecord], *, cache_dir: str | Path | None = None, workers: int | None = None
) -> dict[str, str]:
    """``{path: reason}`` of the records whose image cannot be used (:func:`screen_file`).

    The answer is cached as ``<cache_dir>/kdef_usable_<key>.json``, keyed like the preprocessing cache
    on the file list (paths, sizes, modification times) and :data:`SCREEN_VERSION`.
    """
    key = _fingerprint({"screen": SCREEN_VERSION}, [(r.path, root / r.path) for r in sorted(records, key=_path)])
    path = Path(cache_dir) / f"kdef_usable_{key[:24]}.json" if cache_dir else None
    if path is not None and path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored["key"] == key and isinstance(stored["unusable"], dict):
                return dict(stored["unusable"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("Screening cache %s cannot be trusted (%s); screening again", path, err)
    workers = workers or len(os.sched_getaffinity(0))
    reasons = _map(screen_file, [str(root / r.path) for r in records], workers, f"Checking {len(records)} images")
    unusable = {r.path: reason for r, reason in zip(records, reasons, strict=True) if reason is not None}
    if path is not None:
        atomic_write_json(path, {"key": key, "unusable": unusable})
    return unusable


def _path(record: KDEFRecord) -> str:
    return record.path


def usable_index(
    root: str | Path, *, cache_dir: str | Path | None = None, indexer: Callable[[Path], KDEFIndex] | None = None
) -> KDEFIndex:
    """The images of a data set that every command uses: indexed, screened, the unusable ones listed.

    ``lanmsff-data check``, ``lanmsff-data splits``, training and evaluation all start here, so that
    they count the same images and assign folds over the same list. Records whose image cannot be
    used move to :attr:`KDEFIndex.skipped` with the reason, before any fold is assigned. ``indexer``
    reads the data set's layout (default: :func:`lanmsff.data.kdef.index_kdef`; RaFD, RAF-DB,
    AffectNet and image folders have their own).
    """
    index = (indexer or index_kdef)(Path(root))
    index.drop(screen_records(index.root, index.records, cache_dir=cache_dir))
    return index

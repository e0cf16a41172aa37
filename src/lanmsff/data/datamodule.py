"""Lightning data modules: faces held in memory as uint8 arrays, augmented per sample.

Every sample is ``(image, label, group)``: a float tensor ``(1, S, S)`` in [0, 1], the class index,
and the index of its group in ``group_names`` (the KDEF camera angle), so that metrics can be
reported per pose.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from lanmsff.data.cache import preprocess_records, usable_index
from lanmsff.data.device_augment import augment_batch
from lanmsff.data.faces import DEFAULT_MARGIN, LEGACY_FACE_DETECTOR, check_detector, normalise_crop_mode
from lanmsff.data.kdef import KDEFIndex, KDEFRecord, index_kdef
from lanmsff.data.kdef_names import ANGLES, EXPRESSION_NAMES, SESSIONS
from lanmsff.data.splits import (
    DATA_PROTOCOL_VERSION,
    DEFAULT_PROTOCOL,
    Split,
    SplitSpec,
    assignment_hash,
    split_records,
)
from lanmsff.data.synthetic import generate
from lanmsff.data.transforms import check_augment, offline_expand, train_transform
from lanmsff.errors import ConfigError, UserError, check_choice

log = logging.getLogger(__name__)


class FaceDataset(Dataset):
    """Faces in a uint8 array ``(N, S, S)`` with labels and group indices.

    The augmentation of every sample is seeded from torch's random generator, so that a seeded run
    (``seed_everything``; DataLoader workers are seeded from it too) is reproducible, and a resumed
    run that restores the generator state continues exactly like an uninterrupted one.
    """

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, groups: np.ndarray, transform: Callable | None = None
    ) -> None:
        self.images, self.labels, self.groups, self.transform = images, labels, groups, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        image = self.images[i]
        if self.transform is not None:
            self.transform.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
            image = self.transform(image=image)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0).unsqueeze(0)
        return x, int(self.labels[i]), int(self.groups[i])


class DeviceLoader:
    """Batches of a :class:`FaceDataset` held on the training device as uint8, shuffled every epoch.

    The loader does no work per image on the CPU: indices are drawn with torch's generator (so
    seeded runs repeat and resumed runs continue exactly) and the batch is gathered on the device.
    """

    def __init__(self, dataset: FaceDataset, batch_size: int, *, device: torch.device | str = "cpu") -> None:
        self.batch_size = batch_size
        self.images = torch.from_numpy(np.ascontiguousarray(dataset.images)).to(device)
        self.labels = torch.from_numpy(np.asarray(dataset.labels, np.int64)).to(device)
        self.groups = torch.from_numpy(np.asarray(dataset.groups, np.int64)).to(device)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.images)).to(self.images.device)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.images[idx].unsqueeze(1).float().div_(255.0), self.labels[idx], self.groups[idx]


class FERDataModule(pl.LightningDataModule):
    """Shared machinery: augmentation, loaders and dataset description. Subclasses fill the arrays."""

    class_names: tuple[str, ...] = EXPRESSION_NAMES
    group_names: tuple[str, ...] = ()
    in_channels = 1
    dataset = "faces"  # the name a run record and the cross-dataset report use

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
        super().__init__()
        self.image_size, self.batch_size, self.num_workers, self.seed = image_size, batch_size, num_workers, seed
        self.augment = {"mode": "online", **(augment or {})}
        check_augment(self.augment["mode"])
        # online augmentation as one batched warp on the training device, data kept there too
        self.augment_on_device = bool(augment_on_device) and self.augment["mode"] == "online"
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be at least 1")
        self.data_train: FaceDataset | None = None
        self.data_val: FaceDataset | None = None
        self.data_test: FaceDataset | None = None
        self.test_files: list[str] = []
        self.fingerprint: str | None = None  # of the dataset as used: set by setup()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _set_datasets(
        self,
        train: tuple[np.ndarray, np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray, np.ndarray],
        test: tuple[np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        options = self.augment_options
        mode = self.augment["mode"]
        on_cpu = mode == "online" and not self.augment_on_device
        transform = train_transform(self.image_size, **options) if on_cpu else None
        self.train_images = len(train[0])  # distinct training images, before any augmentation
        if mode == "offline_4x":
            images, labels, groups = train
            train = (offline_expand(images, seed=self.seed, **options), np.repeat(labels, 4), np.repeat(groups, 4))
        for name, part in (("train", train), ("val", val), ("test", test)):
            if len(part[0]) == 0:
                raise ConfigError(f"the {name} split is empty; check data.root, data.angles and the protocol settings")
        self.data_train = FaceDataset(*train, transform=transform)
        self.data_val = FaceDataset(*val)
        self.data_test = FaceDataset(*test)

    def _loader(self, dataset: Dataset | None, *, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before requesting a data loader")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    @property
    def augment_options(self) -> dict[str, Any]:
        """The ``data.augment`` settings other than ``mode`` (passed to the augmentation functions)."""
        return {k: v for k, v in self.augment.items() if k != "mode"}

    def train_dataloader(self) -> DataLoader | DeviceLoader:
        trainer = getattr(self, "trainer", None)
        plain = type(self.data_train) is FaceDataset and self.data_train.transform is None
        if self.augment_on_device and plain and trainer is not None and trainer.world_size == 1:
            return DeviceLoader(self.data_train, self.batch_size, device=trainer.strategy.root_device)
        return self._loader(self.data_train, shuffle=True)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """With ``augment_on_device``, training batches are augmented here, on the device."""
        trainer = getattr(self, "trainer", None)
        if self.augment_on_device and trainer is not None and trainer.training:
            x, *rest = batch
            batch = [augment_batch(x, **self.augment_options), *rest]
        return batch

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.data_val, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data_test, shuffle=False)

    def describe(self) -> dict[str, Any]:
        """Sizes of the splits, for logs and ``summary.json``."""
        return {
            "dataset": self.dataset,
            "fingerprint": self.fingerprint,
            "test_hash": assignment_hash(self.test_files) if self.test_files else None,
            "train_images": getattr(self, "train_images", None),
            "train": len(self.data_train or ()),
            "val": len(self.data_val or ()),
            "test": len(self.data_test or ()),
            "classes": list(self.class_names),
            "groups": list(self.group_names),
        }


SAMPLING_MODES = ("natural", "balanced")


def balanced_sampler(labels: np.ndarray) -> WeightedRandomSampler:
    """A sampler that draws every class equally often: each image weighs 1 / (images of its class)."""
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(labels), replacement=True)


class IndexedDataModule(FERDataModule):
    """Photographs indexed into :class:`~lanmsff.data.kdef.KDEFRecord` s, preprocessed through the cache.

    The machinery every image data set shares (KDEF, RaFD, RAF-DB, AffectNet, image folders): the usable
    images (:func:`lanmsff.data.cache.usable_index` with the data set's :attr:`indexer`), the split of
    :meth:`split`, face crops (an annotated box where the data set gives one, else ``face_crop``), labels from
    ``record.name.label``, groups (views) from ``record.name.angle_index``, and each test image's subgroups
    (``record.name.subgroups``: gender, ...) for :func:`lanmsff.training.metrics.subgroup_metrics`.

    Args:
        root: the data set's folder.
        image_size: side of the square grayscale input.
        face_crop: ``detect`` / ``true`` (face detector, fixed per-angle box as fallback), ``box``
            (always the fixed box), ``none`` / ``false`` (whole image); see :mod:`lanmsff.data.faces`.
        face_margin: growth of a detected or annotated face box on every side, as a fraction of its side.
        face_detector: ``cnn`` (MTCNN, landmarks) or ``haar`` (OpenCV cascades) for ``detect``.
        face_align: with ``detect`` and the CNN, rotate each face so that the eyes are level.
        cache_dir: where preprocessed faces are cached (``None`` = no cache).
        batch_size, num_workers, seed, augment, augment_on_device: as in :class:`FERDataModule`.
        sampling: ``natural`` (every training image once per epoch) or ``balanced`` (every class drawn equally
            often, for imbalanced sets such as AffectNet).
    """

    indexer: Callable[[Path], KDEFIndex] = staticmethod(index_kdef)

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int = 64,
        face_crop: str | bool = "detect",
        face_margin: float = DEFAULT_MARGIN,
        face_detector: str = LEGACY_FACE_DETECTOR,
        face_align: bool = False,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        augment: dict[str, Any] | None = None,
        augment_on_device: bool = False,
        sampling: str = "natural",
    ) -> None:
        super().__init__(
            image_size=image_size,
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            augment=augment,
            augment_on_device=augment_on_device,
        )
        check_choice("data.sampling", sampling, SAMPLING_MODES)
        self.sampling = sampling
        self.root = Path(root)
        self.face_crop, self.face_margin = normalise_crop_mode(face_crop), face_margin
        self.face_detector, self.face_align = check_detector(face_detector), bool(face_align)
        if self.face_align and self.face_crop == "detect" and face_detector != "cnn":
            raise ConfigError("data.face_align=true needs the landmarks of data.face_detector=cnn")
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if image_size < 8:
            raise ConfigError(f"data.image_size={image_size} is too small")
        self.index: KDEFIndex | None = None
        self.crop_counts: dict[str, int] = {}
        self.test_subgroups: list[dict[str, str]] = []  # of every test image, in test order

    def train_dataloader(self) -> DataLoader | DeviceLoader:
        """With ``sampling=balanced`` every class is drawn equally often (with replacement, as many draws per
        epoch as training images; the draws follow torch's seeded generator)."""
        if self.sampling == "natural":
            return super().train_dataloader()
        if self.data_train is None:
            raise RuntimeError("call setup() before requesting a data loader")
        return DataLoader(
            self.data_train,
            batch_size=self.batch_size,
            sampler=balanced_sampler(self.data_train.labels),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def usable(self) -> KDEFIndex:
        """The usable images of :attr:`root` (:func:`lanmsff.data.cache.usable_index` with :attr:`indexer`)."""
        return usable_index(self.root, cache_dir=self.cache_dir, indexer=self.indexer)

    def split(self) -> tuple[KDEFIndex, list[KDEFRecord], Split]:
        """The usable images, the records used and their split."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        index, records, split = self.split()
        faces = preprocess_records(
            index.root,
            index.records,
            image_size=self.image_size,
            mode=self.face_crop,
            margin=self.face_margin,
            detector=self.face_detector,
            align=self.face_align,
            cache_dir=self.cache_dir,
        )
        if faces.failures:  # the screening and the preprocessing disagree: never drop images silently
            path, reason = next(iter(sorted(faces.failures.items())))
            raise UserError(
                f"{len(faces.failures)} images passed the screening but failed preprocessing, e.g. "
                f"{index.root / path}: {reason}; delete the cache files under {self.cache_dir} and retry"
            )
        self._log_index(index)
        self.crop_counts = faces.crop_counts()
        self.fingerprint = faces.key
        if self.face_crop == "detect":
            log.info(
                "Face crops (%s detector%s): %s (box = fallback when no face was detected)",
                self.face_detector,
                ", aligned" if self.face_align else "",
                self.crop_counts,
            )

        def part(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            kept = [records[i] for i in indices]
            rows = faces.rows([r.path for r in kept])
            labels = np.array([r.name.label for r in kept], np.int64)
            groups = np.array([r.name.angle_index for r in kept], np.int64)
            return faces.images[rows], labels, groups

        self._set_datasets(part(split.train), part(split.val), part(split.test))
        self.test_files = [records[i].path for i in split.test]
        self.test_subgroups = [dict(getattr(records[i].name, "subgroups", {})) for i in split.test]
        self.subjects = {
            name: sorted({records[i].subject for i in getattr(split, name) if records[i].subject is not None})
            for name in ("train", "val", "test")
        }
        self.index = index

    def _log_index(self, index: KDEFIndex) -> None:
        if index.skipped:
            log.warning(
                "%s: %d files skipped, e.g. %s (run lanmsff-data check for the list)",
                self.dataset,
                len(index.skipped),
                index.skipped[0],
            )
        if index.excluded:
            excluded = len(index.excluded)
            log.info("%s: %d images excluded by the settings, e.g. %s", self.dataset, excluded, index.excluded[0])
        for item in index.renamed:
            log.info("%s: %s used as %s", self.dataset, item["file"], item["as"])

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["root"] = str(self.root)
        info["sampling"] = self.sampling
        if self.index is not None:
            info["subjects"] = {k: len(v) for k, v in self.subjects.items()}
            info["skipped"] = len(self.index.skipped)
            info["renamed"] = len(self.index.renamed)
            info["excluded"] = len(self.index.excluded)
            info["face_crops"] = self.crop_counts
        return info


class KDEFDataModule(IndexedDataModule):
    """KDEF (or a synthetic tree in its layout) with the protocols of :mod:`lanmsff.data.splits`.

    Args:
        root: a KDEF copy: the folder holding ``KDEF_and_AKDEF``, that folder, or its ``KDEF`` folder.
        image_size, face_crop, face_margin, face_detector, face_align, cache_dir: see
            :class:`IndexedDataModule` (the ``face_detector`` default is what configs written before this
            setting used; ``lanmsff/conf/data/kdef.yaml`` chooses cnn).
        protocol, num_folds, fold, seed, val_fraction, train_angles, test_angles: the split, see
            :class:`lanmsff.data.splits.SplitSpec` (kept as :attr:`spec`).
        angles: keep only these camera angles (e.g. ``[S]`` for frontal only); ``None`` keeps all.
        batch_size, num_workers, augment: loader and augmentation settings.
        augment_on_device: keep the training images on the training device and augment batches there
            (:mod:`lanmsff.data.device_augment`) instead of per image in CPU workers.
    """

    group_names = ANGLES
    dataset = "kdef"

    def __init__(
        self,
        root: str | Path,
        *,
        protocol: str = DEFAULT_PROTOCOL,
        num_folds: int = 10,
        fold: int = 0,
        seed: int = 0,
        val_fraction: float = 0.1,
        angles: Sequence[str] | None = None,
        train_angles: Sequence[str] | None = None,
        test_angles: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, seed=seed, **kwargs)
        self.spec = SplitSpec(
            protocol=protocol,
            num_folds=num_folds,
            fold=fold,
            seed=seed,
            val_fraction=val_fraction,
            train_angles=train_angles,
            test_angles=test_angles,
        )
        self.angles = list(angles) if angles else None
        for angle in self.angles or ():
            check_choice("data.angles", angle, ANGLES)

    def split(self) -> tuple[KDEFIndex, list[KDEFRecord], Split]:
        """The usable images of the copy (:func:`lanmsff.data.cache.usable_index`) and their split; records
        are those of the angles used."""
        index = self.usable()
        if self.spec.warning:
            log.warning(self.spec.warning)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            records, split = split_records(index, self.spec, self.angles)
        return index, records, split

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            protocol=self.spec.protocol,
            protocol_version=DATA_PROTOCOL_VERSION,
            identities_shared=self.spec.identities_shared,
            selection=self.spec.selection,
            fold=self.spec.fold,
            num_folds=self.spec.num_folds,
        )
        return info


class SyntheticKDEFDataModule(KDEFDataModule):
    """:class:`KDEFDataModule` on a generated tree, written on first use (see :mod:`lanmsff.data.synthetic`)."""

    dataset = "kdef_synthetic"

    def __init__(
        self,
        root: str | Path,
        *,
        identities: int = 20,
        sessions: Sequence[str] | None = None,
        generator_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        self.identities, self.generator_seed = identities, generator_seed
        self.sessions = tuple(sessions) if sessions else SESSIONS

    def prepare_data(self) -> None:
        generate(self.root, self.identities, sessions=self.sessions, seed=self.generator_seed)

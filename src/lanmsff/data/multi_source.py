"""Training on several data sets at once: one class vocabulary, per-source metrics, sampling weights per source.

Every source is a data module of its own (its reader, protocol, face crops and cache); this module sets each
up, maps its labels onto one vocabulary (the canonical emotions of :mod:`lanmsff.data.classes`, in the order
the sources first name them) and concatenates the training, validation and test parts. The *group* of an
image is its source, so the per-group metrics of every run (``test/acc_<source>``, ``test/uar_<source>``)
are the per-source metrics; per-view metrics of a multi-view source come from testing on it alone
(``cross_test``). Augmentation is this module's (``data.augment``), applied once to the joined training set.

Sources that share images cannot be trained on together: FER-2013 and FERPlus are the same faces relabelled,
so a test image of one would be a training image of the other (:data:`SHARED_IMAGES`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from lanmsff.data.classes import canonical
from lanmsff.data.datamodule import DeviceLoader, FERDataModule
from lanmsff.errors import ConfigError, UserError

# Data sets made of the same photographs (the names data modules give themselves).
SHARED_IMAGES = (frozenset({"fer2013", "ferplus"}),)


def share_images(first: str, second: str) -> bool:
    """Whether two data sets (by their data modules' ``dataset`` names) are made of the same photographs."""
    return first != second and any({first, second} <= pair for pair in SHARED_IMAGES)


def vocabulary(sources: Mapping[str, FERDataModule]) -> tuple[str, ...]:
    """The canonical emotions of all sources' classes, in the order the sources first name them.

    Raises :class:`ConfigError` for a class with no canonical emotion (it could not be joined with the others).
    """
    names: list[str] = []
    for source, module in sources.items():
        for name in module.class_names:
            key = canonical(name)
            if key is None:
                raise ConfigError(
                    f"data.sources.{source}: class {name!r} is not an emotion lanmsff.data.classes knows; "
                    "rename it (e.g. data.classes of data=folder) to join the sources"
                )
            if key not in names:
                names.append(key)
    return tuple(names)


class MultiSourceDataModule(FERDataModule):
    """Several data modules trained on as one (module docstring).

    Args:
        sources: ``{name: data module}`` (Hydra builds them from ``data.sources.<name>`` configs).
        weights: ``{name: weight}``: the share of training draws each source gets (with replacement, as many
            draws per epoch as training images); ``None`` draws every training image once per epoch.
        image_size, batch_size, num_workers, seed, augment, augment_on_device: as in :class:`FERDataModule`;
            every source must have this ``image_size``.
    """

    dataset = "multi"

    def __init__(
        self,
        sources: Mapping[str, FERDataModule],
        *,
        weights: Mapping[str, float] | None = None,
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
        if len(sources) < 2:
            raise ConfigError("data.sources needs at least two data sets; train on one with data=<name>")
        self.sources = dict(sources)
        self._check_sources()
        self.weights = self._check_weights(weights)
        self.class_names = vocabulary(self.sources)
        self.group_names = tuple(self.sources)
        self.test_subgroups: list[dict[str, str]] = []

    def _check_sources(self) -> None:
        names = {source: module.dataset for source, module in self.sources.items()}
        for first, a in names.items():
            for second, b in names.items():
                if first < second and share_images(a, b):
                    raise UserError(
                        f"data.sources.{first} ({a}) and data.sources.{second} ({b}) are the same photographs "
                        "relabelled: a test face of one would be a training face of the other. Train on one of them."
                    )
        for source, module in self.sources.items():
            if module.image_size != self.image_size:
                raise ConfigError(
                    f"data.sources.{source}.image_size={module.image_size} differs from "
                    f"data.image_size={self.image_size}"
                )

    def _check_weights(self, weights: Mapping[str, float] | None) -> dict[str, float] | None:
        if weights is None:
            return None
        unknown = sorted(set(weights) - set(self.sources))
        if unknown or set(weights) != set(self.sources):
            raise ConfigError(
                f"data.weights must give every source a weight: {sorted(self.sources)} (got {sorted(weights)})"
            )
        if any(not w > 0 for w in weights.values()):
            raise ConfigError(f"data.weights must be positive; got {dict(weights)}")
        return {k: float(weights[k]) for k in self.sources}

    def prepare_data(self) -> None:
        for module in self.sources.values():
            module.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self.data_train is not None:
            return
        parts: dict[str, list] = {"train": [], "val": [], "test": []}
        for group, (source, module) in enumerate(self.sources.items()):
            module.augment, module.augment_on_device = {"mode": "none"}, False  # augmented once, after joining
            module.setup(stage)
            to_joint = np.array([self.class_names.index(canonical(c)) for c in module.class_names], np.int64)
            for part, dataset in (("train", module.data_train), ("val", module.data_val), ("test", module.data_test)):
                groups = np.full(len(dataset), group, np.int64)
                parts[part].append((dataset.images, to_joint[np.asarray(dataset.labels)], groups))
            self.test_files += [f"{source}:{f}" for f in module.test_files]
            subgroups = getattr(module, "test_subgroups", None) or [{}] * len(module.data_test)
            self.test_subgroups += [{"source": source, **g} for g in subgroups]
        joined = {
            part: tuple(np.concatenate(column) for column in zip(*items, strict=True)) for part, items in parts.items()
        }
        self._set_datasets(joined["train"], joined["val"], joined["test"])
        digest = hashlib.sha256("".join(str(m.fingerprint) for m in self.sources.values()).encode())
        self.fingerprint = digest.hexdigest()

    def train_dataloader(self) -> DataLoader | DeviceLoader:
        """Draws per source in proportion to ``weights`` (each image of a source equally likely), if given."""
        if self.weights is None:
            return super().train_dataloader()
        groups = np.asarray(self.data_train.groups)
        counts = np.bincount(groups, minlength=len(self.sources))
        share = np.array(list(self.weights.values())) / sum(self.weights.values())
        weights = torch.as_tensor(share[groups] / counts[groups], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, len(groups), replacement=True)
        return DataLoader(self.data_train, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["sources"] = {name: module.describe() for name, module in self.sources.items()}
        info["weights"] = self.weights
        return info


class SyntheticMultiSourceDataModule(MultiSourceDataModule):
    """:class:`MultiSourceDataModule` of synthetic sources (``data=kdef_rafd_synthetic``), each drawing
    ``identities`` people."""

    def __init__(self, sources: Mapping[str, FERDataModule], *, identities: int = 8, **kwargs: Any) -> None:
        super().__init__(sources, **kwargs)
        for source, module in self.sources.items():
            if not hasattr(module, "identities"):
                raise ConfigError(f"data.sources.{source} is not a synthetic data set (it has no identities)")
            module.identities = identities

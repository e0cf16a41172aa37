"""Data: the readers (KDEF, RaFD, RAF-DB, AffectNet, image folders, FER-2013/FERPlus), protocols, preprocessing,
augmentation, the synthetic generators, data modules (one data set or several at once)."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "FaceDataset": "lanmsff.data.datamodule",
    "FERDataModule": "lanmsff.data.datamodule",
    "KDEFDataModule": "lanmsff.data.datamodule",
    "SyntheticKDEFDataModule": "lanmsff.data.datamodule",
    "FER2013DataModule": "lanmsff.data.fer",
    "FERPlusDataModule": "lanmsff.data.fer",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m lanmsff.data.synthetic` does not import itself twice.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lanmsff.data' has no attribute {name!r}")

"""Checkpoint writing that a crash cannot corrupt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from lanmsff.utils.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file next to it, then rename it into place.

    Lightning's default writer streams into the final path, so a crash or a kill during the write
    leaves a truncated ``last.ckpt`` that the next ``resume=auto`` would trust.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options")
        atomic_write(path, lambda f: torch.save(checkpoint, f))

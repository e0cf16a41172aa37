"""Lightning callbacks of the project."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl

from lanmsff import __version__

CHECKPOINT_KEY = "lanmsff"


class EmbedRunConfig(pl.Callback):
    """Store the run's resolved config (plain containers, secrets redacted) in every checkpoint.

    ``eval.py`` rebuilds the exact data split from it, and prediction reads the preprocessing.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[CHECKPOINT_KEY] = {"version": __version__, "config": self.config}

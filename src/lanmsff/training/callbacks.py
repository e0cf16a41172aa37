"""Lightning callbacks of the project."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch

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


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class NaNGuard(pl.Callback):
    """Stop the run with an error naming the step as soon as the training loss is NaN or infinite.

    The run is then recorded as failed in ``summary.json``; checkpoints written before (the last
    good ones) are kept, since nothing is saved after the bad step.
    """

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not math.isfinite(float(loss.detach())):
            raise NonFiniteLossError(
                f"training loss is {float(loss.detach())} at global step {trainer.global_step} "
                f"(epoch {trainer.current_epoch}, batch {batch_idx}); lower the learning rate or check the inputs"
            )

"""Lightning callbacks of the project."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from lanmsff import __version__
from lanmsff.records import embed_config


class EmbedRunConfig(pl.Callback):
    """Store the run's resolved config (plain containers, secrets redacted) and provenance in every checkpoint.

    ``eval.py`` rebuilds the exact data split from it, and prediction reads the preprocessing.
    """

    def __init__(self, config: dict[str, Any], provenance: dict[str, Any] | None = None) -> None:
        self.config, self.provenance = config, provenance

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        embed_config(checkpoint, self.config, __version__, self.provenance)


class RNGStateCheckpoint(pl.Callback):
    """Keep the random generators' states in checkpoints and restore them on resume.

    Lightning restores weights, optimiser, schedulers and loop counters but not the generators that
    shuffle the data, draw the augmentations and the dropout masks; with them restored, a run resumed
    from an epoch-end checkpoint continues exactly as the uninterrupted run would have. States are
    stored as plain Python values and byte tensors, so checkpoints still load with ``weights_only=True``.
    """

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        np_state = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate(),
        }

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
        name, keys, *rest = states["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
        version, internal, gauss = states["python"]
        random.setstate((version, tuple(internal), gauss))


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

"""Training: the LightningModule, metrics, callbacks, the run record and the train/eval tasks."""

from lanmsff.training.module import FERModule

__all__ = ["FERModule"]

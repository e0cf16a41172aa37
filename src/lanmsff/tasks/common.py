"""What the train and eval tasks share: the precision choice, the data module, logging the run's cost."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, open_dict

from lanmsff.data.datamodule import FERDataModule
from lanmsff.runtime.precision import trainer_precision
from lanmsff.training.run import RunRecorder
from lanmsff.utils.config import instantiate


def apply_trainer_precision(cfg: DictConfig) -> None:
    """Rewrite ``cfg.trainer.precision`` in place: ``auto`` becomes the setting for this device.

    See :func:`lanmsff.runtime.precision.trainer_precision`; the model's ``cpu_bf16`` hint is honoured.
    """
    if "trainer" not in cfg or cfg.trainer.get("precision") is None:
        return
    cpu_bf16 = bool(cfg.get("model", {}).get("cpu_bf16", True))
    resolved = trainer_precision(cfg.trainer.precision, str(cfg.trainer.get("accelerator", "auto")), cpu_bf16=cpu_bf16)
    with open_dict(cfg):
        cfg.trainer.precision = resolved


def build_datamodule(data_cfg: DictConfig | dict) -> FERDataModule:
    """Instantiate the data module and load its data (so that errors surface before training)."""
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def log_hyperparams(loggers: list[Any], run: RunRecorder) -> None:
    """The run's config plus its cost (params, FLOPs, size) in every logger."""
    cost = {key: run.summary[key] for key in ("params", "flops", "model_size_mb")}
    params = {**run.summary["config"], **cost}
    for logger in loggers:
        logger.log_hyperparams(params)

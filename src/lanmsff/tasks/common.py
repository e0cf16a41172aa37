"""What the train and eval tasks share: the precision choice, the data module, logging the run's cost."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, open_dict

from lanmsff.data.classes import ClassMapping, map_classes
from lanmsff.data.datamodule import FERDataModule
from lanmsff.errors import UserError, check_choice
from lanmsff.inference.tta import TTA_MODES, tta_probabilities
from lanmsff.runtime.precision import trainer_precision
from lanmsff.runtime.provenance import provenance
from lanmsff.runtime.slurm import under_submitit
from lanmsff.training.cross_dataset import shared_class_metrics
from lanmsff.training.metrics import subgroup_metrics
from lanmsff.training.module import FERModule
from lanmsff.training.recorder import RunRecorder
from lanmsff.utils.config import instantiate

log = logging.getLogger(__name__)


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


def record_provenance(run: RunRecorder, cfg: DictConfig) -> None:
    """Code revision, versions, command line, machine, seed and determinism into the run's summary."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    trainer = cfg.get("trainer") or {}
    run.summary["provenance"] = provenance(
        overrides=overrides,
        seed=cfg.get("seed"),
        deterministic=trainer.get("deterministic", False),
        precision=trainer.get("precision"),
    )


def trainer_plugins(cfg: DictConfig) -> list[Any]:
    """``trainer.plugins``, plus, under submitit, a SLURM environment without Lightning's auto-requeue
    (see :mod:`lanmsff.runtime.slurm`: its mid-epoch checkpoint would not resume exactly)."""
    plugins = [instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if under_submitit():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def build_datamodule(data_cfg: DictConfig | dict) -> FERDataModule:
    """Instantiate the data module and load its data (so that errors surface before training)."""
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def log_hyperparams(loggers: list[Any], run: RunRecorder) -> None:
    """The run's config plus its cost (params, FLOPs, size) in every logger."""
    cost = {key: run.summary[key] for key in ("params", "flops", "model_size_mb")}
    identity = {key: run.summary.get(key) for key in ("study", "variant", "fold", "seed", "selection")}  # to group by
    data = run.summary.get("data") or {}
    identity.update({key: data.get(key) for key in ("protocol", "protocol_version", "identities_shared")})
    params = {**run.summary["config"], **identity, **cost, "provenance": run.summary.get("provenance")}
    for logger in loggers:
        logger.log_hyperparams(params)


def record_subgroups(run: RunRecorder, outputs: dict[str, torch.Tensor], datamodule: FERDataModule) -> None:
    """Accuracy and UAR per subgroup of the tested people, with their numbers of images, into the run's metrics
    and loggers as ``test/subgroup/<attribute>/<value>/{acc,uar,images}`` (e.g. ``test/subgroup/gender/female/acc``),
    when the data module knows them (``test_subgroups``: KDEF's and RaFD's file names tell them)."""
    subgroups = getattr(datamodule, "test_subgroups", None)
    if not subgroups or not outputs or len(subgroups) != len(outputs["targets"]):
        return
    predicted = outputs["logits"].argmax(dim=1)
    found = subgroup_metrics(predicted, outputs["targets"], subgroups, datamodule.num_classes)
    metrics = {
        f"test/subgroup/{attribute}/{value}/{key}": float(number)
        for attribute, values in found.items()
        for value, scores in values.items()
        for key, number in scores.items()
    }
    run.summary["metrics"].update(metrics)
    for logger in run.loggers:
        logger.log_metrics(metrics)


@dataclass
class DatasetTest:
    """A module's scores on a data module's test split, over the classes both have."""

    metrics: dict[str, float]
    details: dict[str, Any]  # shared and unmapped classes, images tested and left out, confusion matrix
    outputs: dict[str, torch.Tensor]  # logits (model classes), targets (data classes), groups
    mapping: ClassMapping


@torch.no_grad()
def predict_with_tta(module: FERModule, loader: Any, mode: str) -> dict[str, torch.Tensor]:
    """Like :meth:`FERModule.predict_loader`, with the class probabilities averaged over the views of a
    test-time augmentation ``mode`` (:mod:`lanmsff.inference.tta`); ``logits`` are their logarithms."""
    if mode == "none":
        return module.predict_loader(loader)
    return module.predict_loader(loader, lambda x: tta_probabilities(module, x, mode).clamp_min(1e-12).log())


def test_on_dataset(module: FERModule, datamodule: FERDataModule, *, prefix: str, tta: str = "none") -> DatasetTest:
    """Score the module's current weights on a data module's test split over the shared classes.

    Metrics are named ``{prefix}acc``, ``{prefix}f1_macro``, ``{prefix}acc_<group>``; ``tta`` averages
    each face's probabilities over mirrored (and shifted) views. Raises :class:`UserError` when the two
    vocabularies share no class.
    """
    check_choice("tta", tta, TTA_MODES)
    mapping = map_classes(module.class_names, datamodule.class_names)
    if not mapping.shared:
        raise UserError(
            f"the model's classes {module.class_names} share no expression with "
            f"the data's {list(datamodule.class_names)}"
        )
    if mapping.unmapped_data or mapping.unmapped_model:
        log.warning(
            "Testing on %s over the shared classes %s; without a counterpart: data %s, model %s",
            datamodule.dataset,
            list(mapping.shared),
            list(mapping.unmapped_data),
            list(mapping.unmapped_model),
        )
    outputs = predict_with_tta(module, datamodule.test_dataloader(), tta)
    metrics, details = shared_class_metrics(outputs, mapping, datamodule.group_names, prefix=prefix)
    details["dataset"] = datamodule.dataset
    return DatasetTest(metrics, details, outputs, mapping)

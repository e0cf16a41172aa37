"""The eval task behind ``eval.py``: test a checkpoint on the test split of the data it was trained with.

``tta=flip`` / ``tta=flip_shift`` average each test face's probabilities over its mirror image (and
shifted copies); a checkpoint tested on another dataset is scored over the classes both share.

Without ``data`` overrides the exact test split of the training run is rebuilt from the config stored
in the checkpoint; ``data.*`` overrides (e.g. ``data.root=...``) or a whole ``data=...`` choice replace
the stored values.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from lanmsff.checkpoints import load_module
from lanmsff.data.datamodule import FERDataModule
from lanmsff.errors import UserError
from lanmsff.records import embedded_config
from lanmsff.tasks.common import (
    apply_trainer_precision,
    build_datamodule,
    log_hyperparams,
    record_provenance,
    record_subgroups,
    test_on_dataset,
)
from lanmsff.training.cross_dataset import shared_class_outputs
from lanmsff.training.module import FERModule
from lanmsff.training.recorder import RunRecorder, print_results
from lanmsff.utils.config import instantiate, instantiate_callbacks, instantiate_loggers, run_name, run_tags


def eval_data_config(cfg: DictConfig, checkpoint: dict[str, Any]) -> DictConfig:
    """The training run's data config, with this command line's ``data=...`` / ``data.*`` overrides applied."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    stored = embedded_config(checkpoint)
    if "data" in keys or stored is None or "data" not in stored:
        return cfg.data
    data = OmegaConf.create(stored["data"])
    for key in keys:
        if key.startswith("data."):
            OmegaConf.update(data, key[len("data.") :], OmegaConf.select(cfg, key), force_add=True)
    return data


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on the test split of the data it was trained with (or the one given)."""
    apply_trainer_precision(cfg)
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="eval") as run:
        record_provenance(run, cfg)
        if not cfg.get("ckpt_path"):
            raise UserError(
                "ckpt_path is required: python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/<file>.ckpt"
            )
        module, checkpoint = load_module(cfg.ckpt_path)
        data_cfg = eval_data_config(cfg, checkpoint)
        run.summary["config"]["data"] = OmegaConf.to_container(data_cfg, resolve=True)
        _take_identity(cfg, run, embedded_config(checkpoint) or {}, data_cfg)
        datamodule = build_datamodule(data_cfg)
        run.summary["data"] = datamodule.describe()
        run.summary["selection"] = run.summary["data"].get("selection", "validation")
        run.record_model(module.net, (datamodule.in_channels, datamodule.image_size, datamodule.image_size))
        run.summary["best_ckpt"] = str(cfg.ckpt_path)
        run.loggers = instantiate_loggers(cfg.get("logger"), tags=run_tags(cfg), name=run_name(cfg))
        log_hyperparams(run.loggers, run)
        tta = cfg.get("tta", "none")
        if module.class_names == list(datamodule.class_names) and tta == "none":
            _test_with_lightning(cfg, module, datamodule, run)
        else:
            _test_over_shared_classes(module, datamodule, run, tta)
        print_results(run.summary, datamodule.group_names)
    return run.summary


def _take_identity(cfg: DictConfig, run: RunRecorder, stored: dict[str, Any], data_cfg: DictConfig) -> None:
    """The evaluated run's study, variant, fold and seed (from the checkpoint's config, the fold from the
    data tested: none for data without folds), in the summary and in ``cfg`` so that the loggers name,
    group and tag the run by them."""
    identity = {
        "study": stored.get("task_name"),
        "variant": stored.get("variant") or (stored.get("model") or {}).get("name"),
        "fold": data_cfg.get("fold"),
        "seed": stored.get("seed"),
    }
    run.summary.update({k: v for k, v in identity.items() if v is not None or k == "fold"})  # type: ignore[typeddict-item]
    with open_dict(cfg):
        cfg.variant = identity["variant"] or cfg.get("variant")
        cfg.task_name = identity["study"] or cfg.get("task_name")
        cfg.data = data_cfg
    run.summary["config"]["variant"] = cfg.variant


def _test_with_lightning(cfg: DictConfig, module: FERModule, datamodule: FERDataModule, run: RunRecorder) -> None:
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=run.loggers or False, callbacks=callbacks)
    trainer.test(module, datamodule=datamodule, verbose=False)
    run.record_metrics(trainer.callback_metrics)
    run.record_test(module.test_outputs, datamodule.class_names, datamodule.group_names, datamodule.test_files)
    record_subgroups(run, module.test_outputs, datamodule)


def _test_over_shared_classes(module: FERModule, datamodule: FERDataModule, run: RunRecorder, tta: str) -> None:
    """A checkpoint of another dataset (metrics over the shared classes, see :mod:`lanmsff.data.classes`),
    or of the same one tested with test-time augmentation."""
    result = test_on_dataset(module, datamodule, prefix="test/", tta=tta)
    run.summary["metrics"].update(result.metrics)
    if not result.mapping.identity:
        run.summary["class_mapping"] = {k: v for k, v in result.details.items() if k != "confusion_matrix"}
    kept = shared_class_outputs(result.outputs, result.mapping)
    files = [f for f, keep in zip(datamodule.test_files, kept["keep"].tolist(), strict=False) if keep]
    n = len(result.mapping.shared)
    shared = {
        "probs": kept["logits"].softmax(dim=1),
        "targets": kept["targets"],
        "groups": kept["groups"],
        "confusion": torch.tensor(result.details.get("confusion_matrix", [[0] * n] * n)),
    }
    run.record_test(shared, result.mapping.shared, datamodule.group_names, files)

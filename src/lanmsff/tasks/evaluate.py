"""The eval task behind ``eval.py``: test a checkpoint on the test split of the data it was trained with.

Without ``data`` overrides the exact test split of the training run is rebuilt from the config stored
in the checkpoint; ``data.*`` overrides (e.g. ``data.root=...``) or a whole ``data=...`` choice replace
the stored values.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lanmsff.checkpoints import load_module
from lanmsff.errors import UserError
from lanmsff.records import embedded_config
from lanmsff.tasks.common import apply_trainer_precision, build_datamodule, log_hyperparams
from lanmsff.training.run import RunRecorder, print_results
from lanmsff.utils.config import instantiate, instantiate_callbacks, instantiate_loggers, run_tags


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
        if not cfg.get("ckpt_path"):
            raise UserError(
                "ckpt_path is required: python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/<file>.ckpt"
            )
        module, checkpoint = load_module(cfg.ckpt_path)
        data_cfg = eval_data_config(cfg, checkpoint)
        run.summary["config"]["data"] = OmegaConf.to_container(data_cfg, resolve=True)
        datamodule = build_datamodule(data_cfg)
        run.summary["data"] = datamodule.describe()
        if module.class_names != list(datamodule.class_names):
            raise UserError(
                f"ckpt_path={cfg.ckpt_path} was trained on classes {module.class_names}, "
                f"but the data has {list(datamodule.class_names)}"
            )
        run.record_model(module.net, (datamodule.in_channels, datamodule.image_size, datamodule.image_size))
        run.summary["best_ckpt"] = str(cfg.ckpt_path)
        run.loggers = instantiate_loggers(cfg.get("logger"), tags=run_tags(cfg))
        callbacks = instantiate_callbacks(cfg.get("callbacks"))
        trainer: pl.Trainer = instantiate(cfg.trainer, logger=run.loggers or False, callbacks=callbacks)
        log_hyperparams(run.loggers, run)
        trainer.test(module, datamodule=datamodule, verbose=False)
        run.record_metrics(trainer.callback_metrics)
        run.record_test(module.test_outputs, datamodule.class_names, datamodule.group_names, datamodule.test_files)
        print_results(run.summary, datamodule.group_names)
    return run.summary

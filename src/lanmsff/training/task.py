"""The train and eval tasks behind ``train.py`` and ``eval.py``.

Both always write ``summary.json`` and close their loggers (also on failure). User errors (a
missing dataset, an impossible setting) end the process with a one-line message and exit status 2;
in a multirun they fail only their own job and the sweep goes on.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict
from pytorch_lightning.utilities.exceptions import SIGTERMException

from lanmsff.data.datamodule import FERDataModule
from lanmsff.errors import EXIT_USER_ERROR, UserError, check_choice
from lanmsff.inference import tune_glibc_malloc
from lanmsff.training.callbacks import CHECKPOINT_KEY, EmbedRunConfig, RNGStateCheckpoint
from lanmsff.training.module import FERModule
from lanmsff.training.precision import resolve_trainer_precision
from lanmsff.training.run import RunRecorder, print_results
from lanmsff.utils.config import instantiate, instantiate_callbacks, instantiate_loggers, run_tags

log = logging.getLogger(__name__)


def build_datamodule(data_cfg: DictConfig | dict) -> FERDataModule:
    """Instantiate the data module and load its data (so that errors surface before training)."""
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_module(cfg: DictConfig, datamodule: FERDataModule) -> FERModule:
    optim = cfg.get("optim") or {}
    return FERModule(
        cfg.model.net,
        class_names=datamodule.class_names,
        group_names=datamodule.group_names,
        in_channels=datamodule.in_channels,
        image_size=datamodule.image_size,
        optimizer=optim.get("optimizer"),
        scheduler=optim.get("scheduler"),
        monitor=optim.get("monitor", "val/loss"),
        channels_last=bool(cfg.model.get("channels_last", False)),
        compile=bool(cfg.model.get("compile", False)),
    )


def _log_hyperparams(loggers: list[Any], run: RunRecorder) -> None:
    cost = {key: run.summary[key] for key in ("params", "flops", "model_size_mb")}
    params = {**run.summary["config"], **cost}
    for logger in loggers:
        logger.log_hyperparams(params)


RESUME_MODES = ("auto", "never")


def resolve_precision(cfg: DictConfig) -> None:
    """Replace ``trainer.precision=auto`` by the setting for this device, in place (see training.precision)."""
    if "trainer" not in cfg or cfg.trainer.get("precision") is None:
        return
    cpu_bf16 = bool(cfg.get("model", {}).get("cpu_bf16", True))
    resolved = resolve_trainer_precision(
        cfg.trainer.precision, str(cfg.trainer.get("accelerator", "auto")), cpu_bf16=cpu_bf16
    )
    with open_dict(cfg):
        cfg.trainer.precision = resolved


def _best_checkpoint(trainer: pl.Trainer) -> str:
    """The best checkpoint of the ModelCheckpoint that monitors a metric ("" if none was saved)."""
    monitoring = [c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)]
    return monitoring[0].best_model_path if monitoring else ""


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to continue from: ``ckpt_path`` (``last`` = this run folder's last.ckpt), or,
    with ``resume=auto``, the run folder's ``checkpoints/last.ckpt`` when it exists (a restarted or
    requeued job in the same folder)."""
    check_choice("resume", cfg.get("resume", "auto"), RESUME_MODES)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    requested = cfg.get("ckpt_path")
    if requested == "last":
        if not last.is_file():
            raise UserError(
                f"ckpt_path=last: there is no {last}; restart in the interrupted run's folder "
                "with hydra.run.dir=<run folder>"
            )
        return str(last)
    if requested:
        load_checkpoint(requested)  # a clear message for a missing or foreign file
        return str(requested)
    if cfg.get("resume", "auto") == "auto" and last.is_file():
        log.info("Resuming from %s", last)
        return str(last)
    return None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit on the training split, choose the checkpoint on validation, then test it once.

    Configuration (data settings, the network) is checked before any data is generated, read or
    preprocessed.
    """
    resolve_precision(cfg)
    tune_glibc_malloc()  # reuse the large activation buffers instead of mapping them anew every step
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="train") as run:
        if cfg.get("seed") is not None:
            pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data, _convert_="all")
        module = build_module(cfg, datamodule)
        ckpt_path = resume_checkpoint(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        run.summary["data"] = datamodule.describe()
        run.summary["resumed_from"] = ckpt_path
        run.record_model(module.net, (datamodule.in_channels, datamodule.image_size, datamodule.image_size))
        run.loggers = instantiate_loggers(cfg.get("logger"), tags=run_tags(cfg))
        callbacks = [
            *instantiate_callbacks(cfg.get("callbacks")),
            EmbedRunConfig(run.summary["config"]),
            RNGStateCheckpoint(),
        ]
        trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=run.loggers or False)
        _log_hyperparams(run.loggers, run)

        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        run.record_metrics(trainer.callback_metrics)
        run.summary["world_size"] = trainer.world_size
        if not trainer.is_global_zero:
            return run.summary  # DDP: the other processes stop here; rank 0 tests and records
        best = _best_checkpoint(trainer)
        run.summary["best_ckpt"] = best or None
        if cfg.get("test", True):
            if not best:
                log.warning("No checkpoint was saved; testing the weights at the end of training")
            tester = _single_process_tester(cfg, trainer, run.loggers)
            tester.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False)
            run.record_metrics(tester.callback_metrics)
            run.record_test(module.test_outputs, datamodule.class_names, datamodule.group_names, datamodule.test_files)
            print_results(run.summary, datamodule.group_names)
    return run.summary


def _single_process_tester(cfg: DictConfig, trainer: pl.Trainer, loggers: list[Any]) -> pl.Trainer:
    """The trainer itself, or after multi-process training a one-device trainer on rank 0.

    Testing in one process sees every test image exactly once (a distributed sampler pads the
    last batch with repeats) and keeps all predictions for the run folder.
    """
    if trainer.world_size == 1:
        return trainer
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return instantiate(
        cfg.trainer, devices=1, num_nodes=1, strategy="auto", logger=loggers or False, enable_progress_bar=False
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of this project safely (``weights_only=True``), or raise :class:`UserError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"ckpt_path={path}: no such file; pass the .ckpt file of a training run (checkpoints/ in its run folder)"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"ckpt_path={path}: not a loadable PyTorch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path}: not a checkpoint written by lanmsff's train.py")
    return checkpoint


def _eval_data_config(cfg: DictConfig, checkpoint: dict[str, Any]) -> DictConfig:
    """The training run's data config, with this command line's ``data=...`` / ``data.*`` overrides applied."""
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "data" in keys:
        return cfg.data
    data = OmegaConf.create(checkpoint[CHECKPOINT_KEY]["config"]["data"])
    for key in keys:
        if key.startswith("data."):
            OmegaConf.update(data, key[len("data.") :], OmegaConf.select(cfg, key), force_add=True)
    return data


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test a checkpoint on the test split of the data it was trained with (or the one given)."""
    resolve_precision(cfg)
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="eval") as run:
        if not cfg.get("ckpt_path"):
            raise UserError(
                "ckpt_path is required: python eval.py ckpt_path=logs/train/runs/<run>/checkpoints/<file>.ckpt"
            )
        checkpoint = load_checkpoint(cfg.ckpt_path)
        data_cfg = _eval_data_config(cfg, checkpoint)
        run.summary["config"]["data"] = OmegaConf.to_container(data_cfg, resolve=True)
        datamodule = build_datamodule(data_cfg)
        run.summary["data"] = datamodule.describe()
        module = FERModule.load_from_checkpoint(cfg.ckpt_path, map_location="cpu", weights_only=True)
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
        _log_hyperparams(run.loggers, run)
        trainer.test(module, datamodule=datamodule, verbose=False)
        run.record_metrics(trainer.callback_metrics)
        run.record_test(module.test_outputs, datamodule.class_names, datamodule.group_names, datamodule.test_files)
        print_results(run.summary, datamodule.group_names)
    return run.summary


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_cli(task: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> float | None:
    """Run a task from a Hydra entry point; returns ``cfg.optimized_metric`` for sweepers.

    A :class:`UserError` prints its message and exits with status 2 (no traceback). In a multirun a
    failing job is recorded in its ``summary.json``, returns NaN and the sweep continues.
    """
    try:
        summary = task(cfg)
    except SIGTERMException:
        log.warning("Stopped by SIGTERM; restart in the same run folder (resume=auto) to continue")
        sys.exit(128 + signal.SIGTERM)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        if _is_multirun():
            return math.nan
        sys.exit(EXIT_USER_ERROR)
    except Exception:
        if not _is_multirun():
            raise
        log.exception("Job failed; recorded in its summary.json, continuing with the sweep")
        return math.nan  # a failed trial for sweepers that optimise the returned value
    metric = cfg.get("optimized_metric")
    return summary["metrics"].get(metric, math.nan) if metric else None

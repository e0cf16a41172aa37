"""The train task behind ``train.py``: fit, choose the checkpoint on validation, test it once.

It always writes ``summary.json`` and closes its loggers (also on failure). A run restarted in its
own folder (``resume=auto``) continues from ``checkpoints/last.ckpt``.
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lanmsff.checkpoints import keep_temperature, load_checkpoint
from lanmsff.data.datamodule import FERDataModule
from lanmsff.errors import UserError, check_choice
from lanmsff.inference.attention_maps import AttentionPerView
from lanmsff.tasks.common import (
    apply_trainer_precision,
    build_datamodule,
    log_hyperparams,
    record_provenance,
    record_subgroups,
    test_on_dataset,
    trainer_plugins,
)
from lanmsff.training.calibration import fit_temperature
from lanmsff.training.callbacks import EmbedRunConfig, RNGStateCheckpoint
from lanmsff.training.cross_dataset import flag_shared_images
from lanmsff.training.module import FERModule
from lanmsff.training.recorder import RunRecorder, print_next_steps, print_results, scalar_metrics
from lanmsff.utils.config import instantiate, instantiate_callbacks, instantiate_loggers, run_name, run_tags

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")


def build_module(cfg: DictConfig, datamodule: FERDataModule) -> FERModule:
    """The LightningModule for ``cfg.model`` and ``cfg.optim`` on the data module's classes and geometry."""
    optim = cfg.optim
    return FERModule(
        cfg.model.net,
        class_names=datamodule.class_names,
        group_names=datamodule.group_names,
        in_channels=datamodule.in_channels,
        image_size=datamodule.image_size,
        optimizer=optim.optimizer,
        scheduler=optim.get("scheduler"),
        monitor=optim.get("monitor", "val/loss"),
        scheduler_interval=str(optim.get("interval", "epoch")),
        channels_last=bool(cfg.model.get("channels_last", False)),
        compile=bool(cfg.model.get("compile", False)),
        cpu_kernels=str(cfg.model.get("cpu_kernels", "auto")),
    )


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


def check_no_test_selection(cfg: DictConfig) -> None:
    """Refuse settings that would choose on the test set.

    Under ``data.protocol=paper`` the validation set is the test fold, so ``test_checkpoint=best``
    would test the epoch that scored best on the test set, and ``calibrate=temperature`` would fit
    the temperature on it. Both raise :class:`UserError` naming the keys (exit status 2).
    """
    data = cfg.get("data") or {}
    if data.get("protocol") != "paper":
        return
    why = "data.protocol=paper validates on the test fold"
    if cfg.get("test") and cfg.get("test_checkpoint", "best") == "best":
        raise UserError(
            f"{why}, so test_checkpoint=best would test the epoch that scored best on the test set. Use "
            "test_checkpoint=last (the weights training ended with, what the authors evaluate; "
            "experiment=kdef_paper does this) or data.protocol=subject for an honest estimate."
        )
    if _hparams_search() is not None:
        raise UserError(
            f"{why}, so hparams_search would maximise {cfg.get('optimized_metric')} on the test set. "
            "Search with data.protocol=subject."
        )
    if cfg.get("calibrate"):
        raise UserError(
            f"{why}, so calibrate={cfg.calibrate} would fit the temperature on the test set. Drop calibrate "
            "or use data.protocol=subject, whose validation people are not tested."
        )


def _hparams_search() -> str | None:
    """The ``hparams_search`` option this run was started with (a defaults-list choice, not a config key)."""
    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get("hparams_search")


def _record_selection(run: RunRecorder, cfg: DictConfig, data: dict[str, Any]) -> None:
    """What chose the epoch, the LR schedule and the tested weights, and what the search tuned on."""
    run.summary["selection"] = data.get("selection", "validation")
    if (search := _hparams_search()) is not None:
        run.summary["config"]["hparams_search"] = search
    if cfg.get("tuned_on_fold") is not None:
        run.summary["hparams_tuned_on_fold"] = int(cfg.tuned_on_fold)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit on the training split, choose the checkpoint on validation, then test it once.

    Configuration (data settings, the network, settings that would select on the test set) is
    checked before any data is generated, read or preprocessed.
    """
    check_no_test_selection(cfg)
    apply_trainer_precision(cfg)
    with RunRecorder(cfg.paths.output_dir, cfg, job_type="train") as run:
        record_provenance(run, cfg)
        if cfg.get("seed") is not None:
            pl.seed_everything(cfg.seed, workers=True)
        datamodule = instantiate(cfg.data, _convert_="all")
        module = build_module(cfg, datamodule)
        ckpt_path = resume_checkpoint(cfg)
        datamodule.prepare_data()
        datamodule.setup("fit")
        run.summary["data"] = datamodule.describe()
        _record_selection(run, cfg, run.summary["data"])
        run.summary["resumed_from"] = ckpt_path
        # the kernels a CPU trained with (a seed draws other dropout masks under auto than under off)
        run.summary["provenance"]["cpu_kernels"] = {"policy": module.hparams.cpu_kernels, "applied": {}}
        run.record_model(module.net, (datamodule.in_channels, datamodule.image_size, datamodule.image_size))
        run.loggers = instantiate_loggers(cfg.get("logger"), tags=run_tags(cfg), name=run_name(cfg))
        callbacks = [
            *instantiate_callbacks(cfg.get("callbacks")),
            EmbedRunConfig(run.summary["config"], run.summary["provenance"]),
            RNGStateCheckpoint(),
        ]
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=run.loggers or False, plugins=trainer_plugins(cfg)
        )
        log_hyperparams(run.loggers, run)

        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        run.record_metrics(trainer.callback_metrics)
        run.summary["provenance"]["cpu_kernels"]["applied"] = module.cpu_kernels_applied
        run.summary["world_size"] = trainer.world_size
        if not trainer.is_global_zero:
            return run.summary  # DDP: the other processes stop here; rank 0 tests and records
        best = _best_checkpoint(trainer)
        run.summary["best_ckpt"] = best or None
        if cfg.get("test", True):
            tester = _single_process_tester(cfg, trainer, run.loggers)
            _test(cfg, tester, module, datamodule, run, best)
            _calibrate(cfg, module, datamodule, run)
            _cross_test(cfg, module, run)
            print_results(run.summary, datamodule.group_names)
            print_next_steps(list(cfg.get("next_steps") or []), run.summary, commands=user_commands())
    return run.summary


# the commands that next_steps lines are written with (those of a checkout, after make install), and the console
# scripts that do the same for an installed package
CHECKOUT_COMMANDS = {
    ".venv/bin/python predict.py": "lanmsff-predict",
    ".venv/bin/python train.py": "lanmsff-train",
    ".venv/bin/python -m lanmsff.analysis": "lanmsff-compare",
}


def user_commands(argv0: str | None = None) -> dict[str, str]:
    """How the user runs the commands of ``next_steps`` lines: as written when this run was started by a
    checkout's ``train.py``, else (``lanmsff-train``, an installed package) :data:`CHECKOUT_COMMANDS`."""
    started_by = Path(sys.argv[0] if argv0 is None else argv0).name
    return {} if started_by.endswith(".py") else CHECKOUT_COMMANDS


TEST_CHECKPOINTS = ("best", "last")
CALIBRATIONS = ("temperature",)


def _test(cfg: DictConfig, tester: pl.Trainer, module: FERModule, datamodule: Any, run: RunRecorder, best: str) -> None:
    """Test the weights chosen by ``test_checkpoint``: ``best`` (the checkpoint with the best validation
    accuracy) or ``last`` (those training ended with). With ``test_both`` the other ones are tested
    first and recorded as ``test_<other>/...`` metrics."""
    choice = cfg.get("test_checkpoint", "best")
    check_choice("test_checkpoint", choice, TEST_CHECKPOINTS)
    if choice == "best" and not best:
        log.warning("No checkpoint was saved; testing the weights at the end of training")
    if cfg.get("test_both", False) and best:
        other = "last" if choice == "best" else "best"
        last_weights = copy.deepcopy(module.state_dict()) if other == "best" else None
        ckpt = best if other == "best" else None
        tester.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
        scores = scalar_metrics(tester.callback_metrics, prefixes=("test/",))
        run.summary["metrics"].update({f"test_{other}/{k.removeprefix('test/')}": v for k, v in scores.items()})
        if last_weights is not None:
            module.load_state_dict(last_weights)  # back to the weights training ended with
    ckpt = best if choice == "best" and best else None
    tester.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True, verbose=False)
    run.record_metrics(tester.callback_metrics)
    run.record_test(module.test_outputs, datamodule.class_names, datamodule.group_names, datamodule.test_files)
    record_subgroups(run, module.test_outputs, datamodule)
    run.summary["test_checkpoint"] = {"choice": choice, "path": ckpt}


def _calibrate(cfg: DictConfig, module: FERModule, datamodule: Any, run: RunRecorder) -> None:
    """``calibrate=temperature``: fit a temperature on the validation split, report test calibration with it."""
    method = cfg.get("calibrate")
    if not method:
        return
    check_choice("calibrate", method, CALIBRATIONS)
    val = module.predict_loader(datamodule.val_dataloader())
    temperature = fit_temperature(val["logits"], val["targets"])
    test = module.test_outputs
    scaled = (test["logits"] / temperature).softmax(dim=1)
    run.summary["temperature"] = round(temperature, 6)
    if tested := (run.summary.get("test_checkpoint") or {}).get("path"):
        keep_temperature(tested, temperature)  # predict.py and lanmsff.api apply it to this file's probabilities
    run.record_calibration(
        scaled,
        test["targets"],
        test["groups"],
        datamodule.group_names,
        prefix="test_temperature/",
        figure="reliability_temperature.png",
    )


def _cross_test(cfg: DictConfig, module: FERModule, run: RunRecorder) -> None:
    """Score the tested weights on every data config of ``cross_test`` (metrics ``cross/<name>/...``)."""
    for name, data_cfg in (cfg.get("cross_test") or {}).items():
        result = test_on_dataset(module, build_datamodule(data_cfg), prefix=f"cross/{name}/")
        flag_shared_images(str(run.summary["data"].get("dataset")), result.details)
        run.summary["metrics"].update(result.metrics)
        run.summary.setdefault("cross_test", {})[name] = result.details
        for logger in run.loggers:
            logger.log_metrics(result.metrics)


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
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        logger=loggers or False,
        enable_progress_bar=False,
        plugins=trainer_plugins(cfg),
        # what the test writes into the run folder besides the metrics (the mean attention per view)
        callbacks=[c for c in trainer.callbacks if isinstance(c, AttentionPerView)],
    )

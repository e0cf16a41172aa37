"""The training step as the demo runs it: Lightning's loop with the demo's settings, timed per step.

:func:`lightning_steps` composes ``train.py experiment=demo`` (LANMSFF with BatchNorm momentum 0.1,
batch 32, the in-memory synthetic faces with online augmentation on the CPU, ``channels_last``,
``trainer.precision=auto`` resolved by :func:`lanmsff.tasks.common.apply_trainer_precision`, the
CPU kernels (``model.cpu_kernels=auto``) that :class:`~lanmsff.training.module.FERModule`
applies on CPUs, the NaN
guard, the Rich progress bar, a CSV logger with ``log_every_n_steps`` from the config) and fits for
``warmup + steps`` optimiser steps. Only training is timed: validation, checkpoints, early stopping
and the plateau scheduler act at epoch ends and are left out.

Per step it records the *period* (from the end of one step to the end of the next: what a step
costs the demo, loop overhead and data included) and the time *inside* the step (Lightning's
``on_train_batch_start`` to ``on_train_batch_end``: forward, backward, optimiser, logging hooks).
Their difference is the time spent between steps, mostly fetching the next batch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from benchmarks.peer import upper_median

DEMO_DROP = ("ModelCheckpoint", "EarlyStopping")  # callbacks that need validation metrics


class StepTimer(pl.Callback):
    """Wall times of every training step: period (end to end) and inside (batch start to batch end)."""

    def __init__(self) -> None:
        self.periods: list[float] = []
        self.inside: list[float] = []
        self.images: list[int] = []
        self.threads: set[int] = set()
        self._start = self._last_end = None

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._start = time.perf_counter()
        self.threads.add(torch.get_num_threads())

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        end = time.perf_counter()
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
            end = time.perf_counter()
        self.inside.append(end - self._start)
        self.periods.append(end - (self._last_end if self._last_end is not None else self._start))
        self.images.append(len(batch[0]))
        self._last_end = end


BENCH_FOLDS = 4  # the bench's synthetic trees hold 4 or 8 people


def demo_config(data_root: Path, identities: int, workdir: Path, overrides: tuple[str, ...] = ()) -> Any:
    """``train.py experiment=demo`` composed with the data at ``data_root`` and every output in ``workdir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lanmsff.utils.config import CONF_DIR

    GlobalHydra.instance().clear()
    settings = [
        "experiment=demo",
        f"data.root={data_root}",
        f"data.identities={identities}",
        f"data.num_folds={BENCH_FOLDS}",  # person-independent folds need at least as many people as folds
        f"paths.root_dir={workdir}",
        f"paths.output_dir={workdir / 'run'}",
        f"paths.cache_dir={data_root.parent / 'cache'}",  # the preprocessed faces are kept between rounds
        "optim.scheduler=null",
        *overrides,
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=settings)


def lightning_steps(
    data_root: Path,
    identities: int,
    *,
    steps: int,
    warmup: int = 3,
    progress_bar: bool = True,
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Images/s of the demo's Lightning training loop over ``steps`` steps after ``warmup`` steps."""
    from pytorch_lightning.loggers import CSVLogger

    from lanmsff.tasks.common import apply_trainer_precision, build_datamodule
    from lanmsff.tasks.train import build_module
    from lanmsff.utils.config import instantiate, instantiate_callbacks

    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo_config(data_root, identities, Path(tmp), overrides)
        apply_trainer_precision(cfg)
        datamodule = build_datamodule(cfg.data)
        module = build_module(cfg, datamodule)
        timer = StepTimer()
        callbacks = [c for c in instantiate_callbacks(cfg.get("callbacks")) if type(c).__name__ not in DEMO_DROP]
        if not progress_bar:
            callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
        trainer: pl.Trainer = instantiate(
            cfg.trainer,
            callbacks=[*callbacks, timer],
            logger=CSVLogger(tmp, name="bench"),
            max_steps=warmup + steps,
            max_epochs=-1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=progress_bar,
        )
        trainer.fit(module, datamodule=datamodule)
    return _summary(timer, warmup, cfg, progress_bar)


def _summary(timer: StepTimer, warmup: int, cfg: Any, progress_bar: bool) -> dict[str, Any]:
    periods, inside, images = timer.periods[warmup:], timer.inside[warmup:], timer.images[warmup:]
    total, busy = sum(periods), sum(inside)
    return {
        "steps": len(periods),
        "batch": int(cfg.data.batch_size),
        "images_per_s": round(sum(images) / total, 2) if total else None,
        "median_period_ms": round(1e3 * upper_median(periods), 2) if periods else None,
        "inside_step_fraction": round(busy / total, 4) if total else None,
        "between_steps_ms_per_step": round(1e3 * (total - busy) / len(periods), 2) if periods else None,
        "periods_s": [round(p, 5) for p in periods],
        "precision": str(cfg.trainer.precision),
        "channels_last": bool(cfg.model.channels_last),
        "progress_bar": progress_bar,
        "torch_threads": sorted(timer.threads),
    }

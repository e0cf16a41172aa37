"""The LR schedule and early stopping act at the epochs where the authors' Keras callbacks act.

The notebook (``model.ipynb`` of AE-1129/LANMSFF) trains with ``ReduceLROnPlateau('val_loss',
factor=0.1, patience=9)`` and ``EarlyStopping(monitor='val_loss', min_delta=0, patience=14)``.
Keras cuts the rate when ``wait >= patience``; PyTorch's ``ReduceLROnPlateau`` when ``num_bad_epochs >
patience``, one epoch later. The expected epochs below are written by hand from Keras' rules and
are also checked against a small re-implementation of those rules (``keras_lr_schedule``,
``keras_stop_epoch``), written from Keras' callbacks (keras/src/callbacks/reduce_lr_on_plateau.py,
early_stopping.py). Epochs are counted from 1, as Keras prints them.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import DataLoader, TensorDataset

from lanmsff.training.schedulers import KerasReduceLROnPlateau

from .conftest import compose_config

LR = 1e-3
# A validation-loss history with three plateaus. Comments: what Keras' ReduceLROnPlateau(patience=9,
# min_delta=1e-4) counts ("w" = its wait) and what EarlyStopping(patience=14, min_delta=0) counts.
VAL_LOSSES = [
    1.00,  # 1  best                  | ES best
    0.90,  # 2  best 0.90             | ES best
    0.95,  # 3  w1                    | ES w1
    0.90,  # 4  w2 (equal is no gain) | ES w2
    0.89995,  # 5  w3 (gain 5e-5 < min_delta) | ES best (min_delta 0): w0
    0.91,  # 6  w4                    | ES w1
    0.92,  # 7  w5                    | w2
    0.90,  # 8  w6                    | w3
    0.93,  # 9  w7                    | w4
    0.94,  # 10 w8                    | w5
    0.95,  # 11 w9: CUT (1e-3 -> 1e-4), w0 | w6
    0.96,  # 12 w1; PyTorch's 10th bad epoch: its cut | w7
    0.80,  # 13 best 0.80             | ES best
    0.85,  # 14 w1                    | w1
    0.79992,  # 15 w2 (gain 8e-5 < min_delta) | ES best: w0
    0.81,  # 16 w3                    | w1
    0.82,  # 17 w4                    | w2
    0.83,  # 18 w5                    | w3
    0.84,  # 19 w6                    | w4
    0.85,  # 20 w7                    | w5
    0.86,  # 21 w8                    | w6
    0.87,  # 22 w9: CUT (1e-4 -> 1e-5); PyTorch has 9 bad epochs, no cut | w7
    0.70,  # 23 best 0.70 (PyTorch never cuts on the previous plateau) | ES best
    0.70,  # 24 w1 (equal)            | w1 (equal is no gain)
    0.75,  # 25 w2                    | w2
    0.71,  # 26 w3                    | w3
    0.72,  # 27 w4                    | w4
    0.73,  # 28 w5                    | w5
    0.74,  # 29 w6                    | w6
    0.75,  # 30 w7                    | w7
    0.76,  # 31 w8                    | w8
    0.77,  # 32 w9: CUT (1e-5 -> 1e-6) | w9
    0.78,  # 33 w1; PyTorch's 10th bad epoch: its cut | w10
    0.79,  # 34 w2                    | w11
    0.80,  # 35 w3                    | w12
    0.81,  # 36 w4                    | w13
    0.82,  # 37 w5                    | w14: STOP
    0.60,  # 38 (not reached: training stopped at 37)
]
KERAS_CUTS = [11, 22, 32]
TORCH_CUTS = [12, 33]  # torch.optim.lr_scheduler.ReduceLROnPlateau(patience=9), same threshold
KERAS_STOP = 37


# ------------------------------------------------------------------- Keras' rules, re-implemented


def keras_lr_schedule(
    values: list[float],
    *,
    lr: float = LR,
    factor: float = 0.1,
    patience: int = 9,
    min_delta: float = 1e-4,
    cooldown: int = 0,
    min_lr: float = 0.0,
    mode: str = "min",
) -> list[float]:
    """The learning rate after each epoch under Keras' ReduceLROnPlateau.on_epoch_end."""
    better = (lambda a, b: a < b - min_delta) if mode == "min" else (lambda a, b: a > b + min_delta)
    best, wait, cooldown_counter, rates = (math.inf if mode == "min" else -math.inf), 0, 0, []
    for current in values:
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        if better(current, best):
            best, wait = current, 0
        elif cooldown_counter == 0:
            wait += 1
            if wait >= patience and lr > min_lr:
                lr = max(lr * factor, min_lr)
                cooldown_counter, wait = cooldown, 0
        rates.append(lr)
    return rates


def keras_stop_epoch(values: list[float], *, patience: int = 14, min_delta: float = 0.0) -> int | None:
    """The epoch (from 1) at which Keras' EarlyStopping (mode min, no baseline) stops, or None."""
    best, wait = math.inf, 0
    for epoch, current in enumerate(values):
        wait += 1
        if current + abs(min_delta) < best:  # Keras: less(current - min_delta, best), min_delta made -|min_delta|
            best, wait = current, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1
    return None


def cut_epochs(rates: list[float], lr: float = LR) -> list[int]:
    """The epochs (from 1) at whose end the rate went down."""
    before = [lr, *rates[:-1]]
    return [e + 1 for e, (a, b) in enumerate(zip(before, rates)) if b < a]


def drive(scheduler: ReduceLROnPlateau, values: list[float]) -> list[float]:
    """Step ``scheduler`` with each value; the learning rate after each step."""
    rates = []
    for value in values:
        scheduler.step(value)
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
    return rates


def optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    return compose_config("train", [], tmp_path_factory.mktemp("keras_semantics"))


def configured_scheduler(cfg, lr: float = LR) -> ReduceLROnPlateau:
    """The scheduler of ``lanmsff/conf/train.yaml``, built as FERModule.configure_optimizers builds it."""
    return instantiate(cfg.optim.scheduler, _partial_=True, _convert_="all")(optimizer(lr))


# ------------------------------------------------------------------------------------ LR schedule


def test_the_reference_gives_the_hand_written_epochs() -> None:
    rates = keras_lr_schedule(VAL_LOSSES)
    assert cut_epochs(rates) == KERAS_CUTS
    assert rates[KERAS_CUTS[-1] - 1] == pytest.approx(1e-6)
    assert keras_stop_epoch(VAL_LOSSES) == KERAS_STOP


def test_torch_reduce_lr_on_plateau_cuts_one_epoch_late() -> None:
    torch_scheduler = ReduceLROnPlateau(
        optimizer(), mode="min", factor=0.1, patience=9, threshold=1e-4, threshold_mode="abs"
    )
    assert cut_epochs(drive(torch_scheduler, VAL_LOSSES)) == TORCH_CUTS
    assert TORCH_CUTS[0] == KERAS_CUTS[0] + 1  # one epoch later on the first plateau, none on the second


def test_the_configured_scheduler_cuts_at_the_keras_epochs(cfg) -> None:
    assert cfg.optim.scheduler._target_ == "lanmsff.training.schedulers.KerasReduceLROnPlateau"
    scheduler = configured_scheduler(cfg)
    assert isinstance(scheduler, KerasReduceLROnPlateau) and isinstance(scheduler, ReduceLROnPlateau)
    assert (scheduler.patience, scheduler.factor, scheduler.min_delta, scheduler.cooldown) == (9, 0.1, 1e-4, 0)
    rates = drive(scheduler, VAL_LOSSES)
    assert cut_epochs(rates) == KERAS_CUTS
    assert rates == pytest.approx(keras_lr_schedule(VAL_LOSSES), rel=1e-12)


def test_cooldown_counts_as_in_keras() -> None:
    # patience 2, cooldown 2: cut at 3; epoch 4 is in the cooldown; Keras' counter reaches 0 at the start
    # of epoch 5, which already counts (wait 1), so the next cut is at 6 (PyTorch's cooldown=2: at 7).
    values = [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    expected = [3, 6]
    assert cut_epochs(keras_lr_schedule(values, patience=2, cooldown=2)) == expected
    scheduler = KerasReduceLROnPlateau(optimizer(), patience=2, cooldown=2)
    assert cut_epochs(drive(scheduler, values)) == expected
    # Keras' cooldown=1 changes nothing: cuts every second epoch, as without cooldown
    assert cut_epochs(drive(KerasReduceLROnPlateau(optimizer(), patience=2, cooldown=1), values)) == [3, 5, 7]
    assert cut_epochs(drive(KerasReduceLROnPlateau(optimizer(), patience=2, cooldown=0), values)) == [3, 5, 7]


def test_min_lr_stops_the_cuts() -> None:
    values = [1.0, 2.0, 2.0, 2.0, 2.0]
    scheduler = KerasReduceLROnPlateau(optimizer(), patience=1, min_lr=2e-4)
    assert drive(scheduler, values) == pytest.approx([1e-3, 2e-4, 2e-4, 2e-4, 2e-4])
    assert scheduler.num_bad_epochs == 3  # at min_lr Keras neither cuts nor resets its wait


@pytest.mark.parametrize("seed", range(6))
def test_random_histories_follow_the_reference(seed: int) -> None:
    """Random settings (patience 0-4, cooldown 0-3, min_lr, min_delta, mode) on random-walk histories."""
    rng = random.Random(seed)
    for _ in range(25):
        settings = {
            "factor": rng.choice([0.1, 0.5]),
            "patience": rng.randint(0, 4),
            "min_delta": rng.choice([0.0, 1e-4, 0.05]),
            "cooldown": rng.randint(0, 3),
            "min_lr": rng.choice([0.0, 1e-5]),
            "mode": rng.choice(["min", "max"]),
        }
        value, values = 1.0, []
        for _ in range(60):
            value += rng.choice([0.0, 0.0, 1e-5, -1e-5, 0.03, -0.03, 0.1, -0.1])
            values.append(round(value, 6))
        scheduler = KerasReduceLROnPlateau(optimizer(), **settings)
        assert drive(scheduler, values) == pytest.approx(keras_lr_schedule(values, **settings), rel=1e-12), settings


def test_state_dict_resumes_the_schedule(cfg) -> None:
    """A run restarted from a checkpoint (scheduler state saved after epoch 17) cuts at the same epochs."""
    first = configured_scheduler(cfg)
    rates = drive(first, VAL_LOSSES[:17])
    second = configured_scheduler(cfg, lr=rates[-1])
    second.load_state_dict(first.state_dict())
    rates += drive(second, VAL_LOSSES[17:])
    assert cut_epochs(rates) == KERAS_CUTS


@pytest.mark.parametrize(
    "kwargs", [{"factor": 1.0}, {"patience": -1}, {"patience": 2.5}, {"cooldown": -1}, {"min_delta": -1e-4}]
)
def test_invalid_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        KerasReduceLROnPlateau(optimizer(), **kwargs)


# ---------------------------------------------------------------------------------- early stopping


def test_the_configured_early_stopping_is_the_notebooks(cfg) -> None:
    stopping = instantiate(cfg.callbacks.early_stopping)
    assert isinstance(stopping, pl.callbacks.EarlyStopping)
    # EarlyStopping(monitor='val_loss', min_delta=0, patience=14, mode='auto'); restore_best_weights is
    # Keras' default False, so the notebook evaluates the weights training ended with
    assert (stopping.monitor, stopping.mode, stopping.patience, stopping.min_delta) == ("val/loss", "min", 14, 0.0)


def lightning_stop_epoch(stopping: pl.callbacks.EarlyStopping, values: list[float]) -> int | None:
    for epoch, value in enumerate(values, start=1):
        should_stop, _ = stopping._evaluate_stopping_criteria(torch.tensor(value))
        if should_stop:
            return epoch
    return None


def test_lightning_early_stopping_stops_at_the_keras_epoch(cfg) -> None:
    assert lightning_stop_epoch(instantiate(cfg.callbacks.early_stopping), VAL_LOSSES) == KERAS_STOP


@pytest.mark.parametrize(("patience", "min_delta"), [(3, 1e-4), (5, 0.02), (1, 0.0), (14, 0.0)])
def test_lightning_early_stopping_follows_the_reference(patience: int, min_delta: float) -> None:
    rng = random.Random(patience)
    histories = [VAL_LOSSES]
    for _ in range(20):
        value, values = 1.0, []
        for _ in range(80):
            value += rng.choice([0.0, 5e-5, -5e-5, 0.01, -0.01, 0.05, -0.05])
            values.append(round(value, 6))
        histories.append(values)
    for values in histories:
        stopping = pl.callbacks.EarlyStopping(monitor="val/loss", mode="min", patience=patience, min_delta=min_delta)
        expected = keras_stop_epoch(values, patience=patience, min_delta=min_delta)
        assert lightning_stop_epoch(stopping, values) == expected


# ------------------------------------------------------------------------ both, in a Lightning fit


class ScriptedLoss(pl.LightningModule):
    """Logs a given validation-loss history, one value per epoch; records the rate of every epoch."""

    def __init__(self, values: list[float], scheduler_cfg) -> None:
        super().__init__()
        self.values, self.scheduler_cfg = values, scheduler_cfg
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.rates: list[float] = []
        self.epochs_validated = 0

    def on_train_epoch_start(self) -> None:
        self.rates.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def training_step(self, batch, batch_idx):
        return (self.weight * 0.0).sum()

    def validation_step(self, batch, batch_idx) -> None:
        self.log("val/loss", self.values[self.current_epoch], on_epoch=True)
        self.epochs_validated += 1

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=LR)
        scheduler = instantiate(self.scheduler_cfg, _partial_=True, _convert_="all")(opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss", "interval": "epoch"}}


def test_a_lightning_fit_cuts_and_stops_at_the_keras_epochs(cfg, tmp_path: Path) -> None:
    module = ScriptedLoss(VAL_LOSSES, cfg.optim.scheduler)
    stopping = instantiate(cfg.callbacks.early_stopping)
    loader = DataLoader(TensorDataset(torch.zeros(1, 1)), batch_size=1)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=len(VAL_LOSSES),
        callbacks=[stopping],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert module.epochs_validated == KERAS_STOP  # stopped after epoch 37, as Keras
    assert stopping.stopped_epoch + 1 == KERAS_STOP
    # the rate of epoch k + 1 is the one set at the end of epoch k
    assert cut_epochs(module.rates[1:]) == KERAS_CUTS

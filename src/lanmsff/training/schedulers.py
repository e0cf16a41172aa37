"""Learning-rate schedulers whose arguments mean what the authors' Keras arguments mean.

The authors' notebook (``model.ipynb``) uses ``keras.callbacks.ReduceLROnPlateau('val_loss',
factor=0.1, patience=9, mode='auto')``. PyTorch's :class:`torch.optim.lr_scheduler.ReduceLROnPlateau`
takes arguments of the same names, but counts them differently, so copying the numbers over does
not give the same schedule; :class:`KerasReduceLROnPlateau` does.
"""

from __future__ import annotations

import logging
from typing import Literal, SupportsFloat

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau

log = logging.getLogger(__name__)


class KerasReduceLROnPlateau(ReduceLROnPlateau):
    """``ReduceLROnPlateau`` with the rules of Keras' callback (Keras 2 and 3 alike).

    At the end of every epoch, with the monitored value ``current`` (``step(current)``):

    1. if a cooldown is running, its counter goes down by one and the count of bad epochs is reset;
    2. if ``current`` improves on the best value so far by *more* than ``min_delta`` (``current <
       best - min_delta`` in ``min`` mode, ``current > best + min_delta`` in ``max`` mode), it becomes
       the best value and the count of bad epochs is reset;
    3. otherwise, unless a cooldown is (still) running, the count goes up by one, and when it
       *reaches* ``patience`` every learning rate above ``min_lr`` is multiplied by ``factor``
       (and clamped to ``min_lr``), the count is reset and a cooldown of ``cooldown`` starts.

    Differences from PyTorch's class, whose arguments have the same names:

    * ``patience``: Keras cuts at the ``patience``-th epoch without improvement (``wait >=
      patience``), PyTorch at the next one (``num_bad_epochs > patience``). With the authors'
      ``patience=9``, PyTorch's class cuts one epoch later than their notebook does.
    * ``min_delta`` is Keras' name for PyTorch's ``threshold`` and is always absolute (PyTorch's
      default ``threshold_mode`` is relative). Keras' default is 1e-4, as is this class'.
    * ``cooldown``: Keras lowers the counter *before* it looks at the epoch, so ``cooldown=c``
      ignores ``c - 1`` epochs after a cut (``cooldown=1`` changes nothing); PyTorch ignores ``c``.
    * ``min_lr``: Keras cuts whenever the rate is above ``min_lr``; at or below it nothing happens
      and the count is not reset. PyTorch skips cuts smaller than ``eps``; there is no ``eps`` here.
    * ``mode`` is ``min`` or ``max``; Keras' ``auto`` (``max`` when the monitor's name contains
      ``acc``, else ``min``) needs the monitor's name, which a scheduler is not given: the
      authors' ``auto`` on ``val_loss`` is ``min``.

    The state (best value, bad-epoch count, cooldown counter) lives in PyTorch's attributes
    (``best``, ``num_bad_epochs`` = Keras' ``wait``, ``cooldown_counter``), so ``state_dict`` and
    checkpoints work as for the parent class. ``patience`` keeps Keras' meaning (9 for the authors).

    Args:
        optimizer: the optimizer whose learning rates are cut (every parameter group).
        mode: ``min`` (the monitored value should fall, e.g. a loss) or ``max``.
        factor: the multiplier of a cut, ``0 <= factor < 1`` (``new_lr = lr * factor``).
        patience: number of epochs without improvement after which the rate is cut (Keras' meaning).
        min_delta: an improvement must beat the best value by more than this (absolute), at least 0.
        cooldown: Keras' cooldown (see above), at least 0.
        min_lr: lower bound of the learning rate; a float, or one per parameter group.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: list[float] | float = 0.0,
    ) -> None:
        if not 0.0 <= factor < 1.0:
            raise ValueError(f"factor={factor} must satisfy 0 <= factor < 1 (Keras: new_lr = lr * factor)")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r} must be a non-negative integer (a number of epochs)")
        if min_delta < 0:
            raise ValueError(f"min_delta={min_delta} must be non-negative (an absolute improvement)")
        super().__init__(
            optimizer,
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=min_delta,
            threshold_mode="abs",
            cooldown=cooldown,
            min_lr=min_lr,
            eps=0.0,
        )

    @property
    def min_delta(self) -> float:
        """Keras' name for the absolute improvement threshold (PyTorch's ``threshold``)."""
        return self.threshold

    def step(self, metrics: SupportsFloat) -> None:  # type: ignore[override]
        """Take the epoch's monitored value and cut the learning rates where Keras would."""
        current = float(metrics)
        self.last_epoch += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        elif not self.in_cooldown:
            self.num_bad_epochs += 1
            if self.num_bad_epochs >= self.patience and self._cut():
                self.cooldown_counter = self.cooldown
                self.num_bad_epochs = 0
        self._last_lr = [float(group["lr"]) for group in self.optimizer.param_groups]

    def _cut(self) -> bool:
        """Multiply every rate above its ``min_lr`` by ``factor`` (at least ``min_lr``); whether any changed."""
        groups = self.optimizer.param_groups
        if len(self.min_lrs) != len(groups):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"the optimizer has {len(groups)} parameter groups but min_lr lists {len(self.min_lrs)}"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        cut = False
        for group, min_lr in zip(groups, self.min_lrs, strict=True):
            old_lr = float(group["lr"])
            if old_lr > min_lr:
                new_lr = max(old_lr * self.factor, min_lr)
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(new_lr)
                else:
                    group["lr"] = new_lr
                cut = True
        if cut:
            rates = ", ".join(f"{float(g['lr']):.3g}" for g in groups)
            log.info(
                "Epoch %d: reducing the learning rate to %s (Keras' ReduceLROnPlateau rules)", self.last_epoch, rates
            )
        return cut

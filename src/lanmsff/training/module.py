"""The LightningModule that trains any backbone on facial expressions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from lanmsff.errors import ConfigError, check_choice
from lanmsff.runtime.hardware import compile_module
from lanmsff.training.cpu_kernels import POLICIES, apply_cpu_kernels, remove_cpu_kernels
from lanmsff.training.metrics import GroupedAccuracy, recall_metrics
from lanmsff.utils.config import instantiate

log = logging.getLogger(__name__)

SCHEDULER_INTERVALS = ("epoch", "step")


def _plain(cfg: Any) -> Any:
    """Hydra/OmegaConf nodes to plain containers, so checkpoints load with ``weights_only=True``."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


class FERModule(pl.LightningModule):
    """Cross-entropy training of the backbone described by ``net`` (a Hydra ``_target_`` config).

    The backbone is built here from its config, so a checkpoint is self-describing: it holds the
    network config, the class names and the group (pose) names next to the weights.

    Args:
        net: instantiable config of the backbone; it receives ``num_classes``, ``in_channels`` and
            ``image_size`` as keyword arguments.
        class_names: class names in label order.
        group_names: names of the sample groups (KDEF camera angles) for per-group accuracy.
        in_channels, image_size: input geometry.
        optimizer, scheduler: instantiable configs (without ``params`` / ``optimizer``), from the run
            config's ``optim`` group (``lanmsff/conf/train.yaml`` holds the authors' settings, the one source of
            the defaults); ``scheduler`` may be ``None``. Without ``optimizer`` the module can run but
            not train.
        monitor: metric the scheduler follows (the authors' ``val_loss``).
        scheduler_interval: ``epoch`` (the scheduler steps after each epoch) or ``step`` (after each
            optimizer step, e.g. ``OneCycleLR``); a scheduler config whose ``total_steps`` is ``None``
            gets the fit's number of optimizer steps.
        channels_last: run the network in channels-last memory format (faster convolutions on CPU).
        compile: run the network through ``torch.compile`` (the weights and checkpoints stay those of
            the plain network).
        cpu_kernels: ``auto`` trains on a CPU with the kernels of :mod:`lanmsff.training.cpu_kernels`
            (applied when ``fit`` starts and removed when it ends, so that checkpoints, testing and
            evaluation see the plain network); ``off`` trains the plain modules.
    """

    def __init__(
        self,
        net: Mapping[str, Any],
        *,
        class_names: Sequence[str],
        group_names: Sequence[str] = (),
        in_channels: int = 1,
        image_size: int = 64,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        monitor: str = "val/loss",
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        compile: bool = False,
        cpu_kernels: str = "auto",
    ) -> None:
        super().__init__()
        net, optimizer, scheduler = _plain(net), _plain(optimizer), _plain(scheduler)
        self.save_hyperparameters(
            {
                "net": net,
                "class_names": list(class_names),
                "group_names": list(group_names),
                "in_channels": in_channels,
                "image_size": image_size,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "monitor": monitor,
                "scheduler_interval": scheduler_interval,
                "channels_last": channels_last,
                "compile": compile,
                "cpu_kernels": cpu_kernels,
            }
        )
        num_classes = len(class_names)
        self.net = instantiate(net, num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        check_choice("model.cpu_kernels", cpu_kernels, POLICIES)
        check_choice("optim.interval", scheduler_interval, SCHEDULER_INTERVALS)
        self.cpu_kernels_applied: dict[str, int] = {}  # what the last fit applied (provenance)
        # kept out of the module tree, so that state_dict keys and checkpoints do not change. Static
        # shapes: one graph per batch size met (the full batches, an epoch's last one, evaluation);
        # with automatic dynamic shapes the first short batch turned every later step into a slower
        # dynamic-shape graph (docs/speed.md: model.compile)
        self.__dict__["_run_net"] = compile_module(self.net, dynamic=False) if compile else self.net

        def quality() -> MetricCollection:
            return MetricCollection(
                {
                    "acc": MulticlassAccuracy(num_classes, average="micro"),
                    "f1_macro": MulticlassF1Score(num_classes, average="macro"),
                }
            )

        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_metrics, self.test_metrics = quality(), quality()
        self.val_group_acc = GroupedAccuracy(max(len(group_names), 1))
        self.test_group_acc = GroupedAccuracy(max(len(group_names), 1))
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # part of checkpoints, so a resumed run keeps its best
        self.test_outputs: dict[str, torch.Tensor] = {}
        self._test_batches: list[tuple[torch.Tensor, ...]] = []

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    @property
    def group_names(self) -> list[str]:
        return list(self.hparams.group_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._run_net(x)

    def _step(self, batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, groups = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        return loss, logits, y, groups

    # ------------------------------------------------------------------ train
    def on_fit_start(self) -> None:
        """Apply the CPU kernels of ``cpu_kernels`` for this fit (:mod:`lanmsff.training.cpu_kernels`)."""
        precision = str(self.trainer.precision)
        self.cpu_kernels_applied = apply_cpu_kernels(
            self.net, self.hparams.cpu_kernels, device=self.device, precision=precision
        )
        if any(self.cpu_kernels_applied.values()):
            log.debug("CPU kernels (model.cpu_kernels=%s): %s", self.hparams.cpu_kernels, self.cpu_kernels_applied)

    def teardown(self, stage: str) -> None:
        remove_cpu_kernels(self.net)  # when a fit ends, also by an exception: testing sees the plain network

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, logits, y, _ = self._step(batch)
        self.train_loss(loss)
        self.train_acc(logits, y)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    # ------------------------------------------------------------------ val / test
    def _eval_step(self, batch: Sequence[torch.Tensor], stage: str) -> tuple[torch.Tensor, ...]:
        loss, logits, y, groups = self._step(batch)
        getattr(self, f"{stage}_loss")(loss)
        getattr(self, f"{stage}_metrics").update(logits, y)
        getattr(self, f"{stage}_group_acc").update(logits, y, groups)
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_step=False, on_epoch=True, prog_bar=True)
        return logits, y, groups

    def _log_epoch(self, stage: str) -> dict[str, float]:
        values = {f"{stage}/{k}": v for k, v in getattr(self, f"{stage}_metrics").compute().items()}
        group_acc = getattr(self, f"{stage}_group_acc").compute().reshape(-1)  # 0-d when there is one group
        for name, acc in zip(self.group_names, group_acc, strict=False):
            if not torch.isnan(acc):
                values[f"{stage}/acc_{name}"] = acc
        self.log_dict(values, prog_bar=False)
        getattr(self, f"{stage}_metrics").reset()
        getattr(self, f"{stage}_group_acc").reset()
        return values

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        values = self._log_epoch("val")
        if not self.trainer.sanity_checking:
            self.val_acc_best(values["val/acc"])
            self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._test_batches = []
        self.test_confusion.reset()

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        logits, y, groups = self._eval_step(batch, "test")
        self.test_confusion.update(logits, y)
        self._test_batches.append((logits.detach().float().cpu(), y.cpu(), groups.cpu()))

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        logits, targets, groups = (torch.cat(parts) for parts in zip(*self._test_batches, strict=True))
        recalls = recall_metrics(logits.argmax(dim=1), targets, groups, self.class_names, self.group_names)
        self.log_dict(recalls, prog_bar=False)
        self.test_outputs = {
            "logits": logits,
            "probs": logits.softmax(dim=1),
            "targets": targets,
            "groups": groups,
            "confusion": self.test_confusion.compute().cpu(),
        }

    @torch.no_grad()
    def predict_loader(
        self,
        loader: Iterable[Sequence[torch.Tensor]],
        forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Logits, targets and groups of every batch of ``loader`` (eval mode, on this module's device);
        ``forward`` maps a batch to its logits (default: the module itself)."""
        forward = forward or self
        was_training = self.training
        self.eval()
        parts = [(forward(x.to(self.device)).float().cpu(), y.cpu(), g.cpu()) for x, y, g in loader]
        self.train(was_training)
        logits, targets, groups = (torch.cat(column) for column in zip(*parts, strict=True))
        return {"logits": logits, "targets": targets, "groups": groups}

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        if not self.hparams.optimizer:
            raise ConfigError("FERModule was built without an optimizer config: pass optimizer= (optim.optimizer)")
        optimizer = instantiate(self.hparams.optimizer, _partial_=True, _convert_="all")(self.parameters())
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        settings = dict(self.hparams.scheduler)
        if "total_steps" in settings and settings["total_steps"] is None:
            settings["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = instantiate(settings, _partial_=True, _convert_="all")(optimizer)
        interval = self.hparams.get("scheduler_interval", "epoch")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor, "interval": interval},
        }

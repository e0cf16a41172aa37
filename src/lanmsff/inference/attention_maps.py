"""Where the network looks, per view, over a whole test set: MassAtt's spatial attention averaged per view.

:class:`AttentionPerView` (the callback ``callbacks.attention_maps``, on by default) reads the spatial maps
of the test loop's own forward passes (no extra pass over the data) with
:func:`lanmsff.models.introspection.capture_attention`, turns each image's maps into one heat map as
``predict.py explain=true`` does (:func:`lanmsff.inference.explain.spatial_attention`: every block's map
resized to the input, averaged, scaled to [0, 1] by its own maximum), and sums them per view (the data's
groups: KDEF's FL, HL, S, HR, FR; ``all`` for data without groups) together with the input images. When
the test ends it writes into the run folder (:func:`lanmsff.heatmaps.write_per_view`):

* ``attention/per_view.npz`` (:class:`lanmsff.heatmaps.PerViewAttention`): ``views``, ``counts`` (test
  images per view), ``attention`` (the mean heat map per view, ``(V, S, S)`` in [0, 1]), ``faces`` (the
  mean input image per view, ``(V, S, S)`` in [0, 1], channels averaged) and, with ``grad_cam=true``,
  ``grad_cam`` (the mean Grad-CAM of the last block for the predicted class, each image's map scaled to
  [0, 1] first);
* ``attention/per_view.png`` (:func:`lanmsff.heatmaps.per_view_figure`): a column per view, the mean face
  above the mean attention drawn over it.

The comparison report pools the files of each variant's runs into one figure per study. A network
without MassAtt's spatial branch (the baselines, ``attention=channel``) writes nothing and says so in the
log.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from lanmsff.heatmaps import NO_GROUPS, NPZ_FILE, PerViewAttention, write_per_view
from lanmsff.inference.explain import grad_cam, last_block, spatial_attention
from lanmsff.models.blocks import MassAtt
from lanmsff.models.introspection import capture_attention

log = logging.getLogger(__name__)


def has_spatial_attention(net: nn.Module) -> bool:
    """Whether ``net`` has a MassAtt block with a spatial map (not a baseline, not ``attention=channel``)."""
    return any(isinstance(m, MassAtt) and m.spatial is not None for m in net.modules())


class PerViewSums:
    """Running sums per group (view) of heat maps and input images, on the device of the first batch."""

    def __init__(self, groups: int) -> None:
        self.groups = max(groups, 1)
        self.counts: torch.Tensor | None = None
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, groups: torch.Tensor, **maps: torch.Tensor) -> None:
        """Add ``(N, S, S)`` maps (``attention``, ``faces``, ``grad_cam``) of images of group indices ``groups``."""
        if self.counts is None:
            self.counts = torch.zeros(self.groups, dtype=torch.long, device=groups.device)
        self.counts.index_add_(0, groups, torch.ones_like(groups))
        for name, value in maps.items():
            if name not in self.sums:
                self.sums[name] = torch.zeros(self.groups, *value.shape[1:], dtype=torch.float64, device=value.device)
            self.sums[name].index_add_(0, groups.to(value.device), value.double())

    def result(self, group_names: Sequence[str]) -> PerViewAttention | None:
        """The means of the groups that had images, named by ``group_names`` (``all`` without names)."""
        if self.counts is None or not int(self.counts.sum()):
            return None
        counts = self.counts.cpu().numpy()
        seen = np.flatnonzero(counts)
        names = [group_names[i] if group_names else NO_GROUPS for i in seen]
        means = {name: total.cpu().numpy()[seen] / counts[seen, None, None] for name, total in self.sums.items()}
        return PerViewAttention(names, counts[seen], means["attention"], means["faces"], means.get("grad_cam"))


class AttentionPerView(pl.Callback):
    """MassAtt's spatial attention averaged per view over the test set, written into ``dirpath`` on test end.

    Args:
        dirpath: the run folder (``attention/per_view.npz`` and ``.png`` go under it).
        grad_cam: also average Grad-CAM of the last block for the predicted class; it costs a forward and
            a backward pass per test batch on top of the test's own forward (off by default).
    """

    def __init__(self, dirpath: str | Path, *, grad_cam: bool = False) -> None:
        self.dirpath = Path(dirpath)
        self.grad_cam = grad_cam
        self._stack: contextlib.ExitStack | None = None
        self._maps: dict[str, torch.Tensor] = {}
        self._sums = PerViewSums(1)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        self._sums = PerViewSums(len(getattr(pl_module, "group_names", ()) or ()))
        net = getattr(pl_module, "net", pl_module)
        if not has_spatial_attention(net):
            log.info("%s has no MassAtt spatial attention: no %s in the run folder", type(net).__name__, NPZ_FILE)
            return
        self._stack = contextlib.ExitStack()
        self._maps = self._stack.enter_context(capture_attention(net))

    def on_test_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._maps.clear()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._stack is None or not self._maps:
            return
        x, _, groups = batch[:3]
        size = x.shape[-1]
        maps = {"attention": spatial_attention(self._maps, size), "faces": x.float().mean(dim=1)}
        if self.grad_cam:
            maps["grad_cam"] = self._grad_cam(getattr(pl_module, "net", pl_module), x)
        self._sums.add(groups.long(), **maps)

    @staticmethod
    def _grad_cam(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Grad-CAM of the last block on a copy of the batch made outside the test loop's inference mode."""
        with torch.inference_mode(False):
            cams = grad_cam(net, last_block(net), x.clone())
        net.zero_grad(set_to_none=True)
        return torch.from_numpy(cams)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._stack is None:
            return
        self._close()
        result = self._sums.result(list(getattr(pl_module, "group_names", ()) or ()))
        if result is not None and trainer.is_global_zero:
            write_per_view(result, self.dirpath)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            self._stack.close()
        self._stack, self._maps = None, {}

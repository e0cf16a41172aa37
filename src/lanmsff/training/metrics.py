"""Metrics beyond torchmetrics' built-ins: accuracy per group (per camera angle for KDEF)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class GroupedAccuracy(Metric):
    """Top-1 accuracy computed separately for each group (e.g. pose), synchronised across processes.

    ``compute()`` returns a tensor of length ``num_groups``, NaN for groups that received no sample.
    """

    full_state_update = False

    def __init__(self, num_groups: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_groups = num_groups
        self.add_state("correct", default=torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> None:
        """``preds`` are class indices or logits ``(B, C)``; ``groups`` are group indices."""
        if preds.dim() == 2:
            preds = preds.argmax(dim=1)
        hits = (preds == target).long()
        self.correct += torch.bincount(groups, weights=hits, minlength=self.num_groups).long()
        self.total += torch.bincount(groups, minlength=self.num_groups)

    def compute(self) -> torch.Tensor:
        total = self.total.float()
        return torch.where(total > 0, self.correct.float() / total.clamp(min=1), torch.full_like(total, float("nan")))

"""Metrics beyond torchmetrics' built-ins: accuracy per group (per camera angle for KDEF), and recall
per class and its unweighted average (UAR), overall and per group, from confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

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


def confusion_matrix(predicted: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(num_classes, num_classes)``, rows the true class, columns the predicted one."""
    cells = targets.long() * num_classes + predicted.long()
    return torch.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_recalls(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of every class (row), NaN for a class with no sample."""
    support = confusion.sum(dim=1).double()
    return torch.where(support > 0, confusion.diagonal().double() / support.clamp(min=1), float("nan"))


def unweighted_average_recall(confusion: torch.Tensor) -> float:
    """The mean of the per-class recalls over the classes that have samples (UAR).

    It equals :func:`sklearn.metrics.balanced_accuracy_score` and weighs every expression equally
    however many images it has (the usual headline on imbalanced sets such as AffectNet).
    """
    recalls = class_recalls(confusion)
    present = recalls[~recalls.isnan()]
    return float(present.mean()) if len(present) else float("nan")


def recall_metrics(
    predicted: torch.Tensor,
    targets: torch.Tensor,
    groups: torch.Tensor,
    class_names: Sequence[str],
    group_names: Sequence[str] = (),
    *,
    prefix: str = "test/",
) -> dict[str, float]:
    """``{prefix}uar``, ``{prefix}recall_<class>`` and ``{prefix}uar_<group>`` (groups with samples)."""
    n = len(class_names)
    confusion = confusion_matrix(predicted, targets, n)
    metrics = {f"{prefix}uar": unweighted_average_recall(confusion)}
    for name, recall in zip(class_names, class_recalls(confusion).tolist(), strict=True):
        if recall == recall:  # not NaN
            metrics[f"{prefix}recall_{name}"] = recall
    for index, name in enumerate(group_names):
        chosen = groups == index
        if chosen.any():
            metrics[f"{prefix}uar_{name}"] = unweighted_average_recall(
                confusion_matrix(predicted[chosen], targets[chosen], n)
            )
    return metrics


def confusion_per_group(
    predicted: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor, num_classes: int, group_names: Sequence[str]
) -> dict[str, list[list[int]]]:
    """The confusion matrix of every group that has samples (``{group: rows}``)."""
    return {
        name: confusion_matrix(predicted[groups == index], targets[groups == index], num_classes).tolist()
        for index, name in enumerate(group_names)
        if (groups == index).any()
    }


def subgroup_metrics(
    predicted: torch.Tensor, targets: torch.Tensor, subgroups: Sequence[dict[str, str]], num_classes: int
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Accuracy and UAR of every subgroup of the people tested, with its number of images.

    ``subgroups`` holds, for every test image, its groups by attribute (``{"gender": "female", "age": "adult"}``;
    RaFD's and KDEF's file names tell them). Returns ``{attribute: {value: {"images", "acc", "uar"}}}``, values
    sorted; empty when no image has an attribute.
    """
    if len(subgroups) != len(targets):
        raise ValueError(f"{len(subgroups)} subgroup entries for {len(targets)} test images")
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    attributes = sorted({key for groups in subgroups for key in groups})
    for attribute in attributes:
        values = [groups.get(attribute) for groups in subgroups]
        out[attribute] = {}
        for value in sorted({v for v in values if v is not None}):
            chosen = torch.tensor([v == value for v in values])
            hits = predicted[chosen] == targets[chosen]
            out[attribute][value] = {
                "images": int(chosen.sum()),
                "acc": float(hits.float().mean()),
                "uar": unweighted_average_recall(confusion_matrix(predicted[chosen], targets[chosen], num_classes)),
            }
    return out

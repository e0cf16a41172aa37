"""Test a model on another dataset's test split, over the classes both vocabularies share."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_confusion_matrix, multiclass_f1_score

from lanmsff.data.classes import ClassMapping
from lanmsff.data.multi_source import share_images
from lanmsff.training.metrics import recall_metrics

log = logging.getLogger(__name__)


def shared_class_outputs(outputs: dict[str, torch.Tensor], mapping: ClassMapping) -> dict[str, torch.Tensor]:
    """Logits restricted to the shared classes and targets renumbered to them; unmapped images dropped.

    ``outputs`` holds ``logits`` (in the model's classes), ``targets`` (in the data's classes) and
    ``groups``. Shared class ``k`` is ``mapping.shared[k]``.
    """
    targets = outputs["targets"].long()
    size = max(int(targets.max()) + 1 if len(targets) else 0, max(mapping.data_index, default=-1) + 1)
    data_to_shared = torch.full((size,), -1, dtype=torch.long)
    data_to_shared[list(mapping.data_index)] = torch.arange(len(mapping.shared))
    shared_targets = data_to_shared[targets]
    keep = shared_targets >= 0
    logits = outputs["logits"][:, list(mapping.model_index)]
    return {"logits": logits[keep], "targets": shared_targets[keep], "groups": outputs["groups"][keep], "keep": keep}


def shared_class_metrics(
    outputs: dict[str, torch.Tensor], mapping: ClassMapping, group_names: Sequence[str] = (), *, prefix: str = "test/"
) -> tuple[dict[str, float], dict[str, Any]]:
    """Accuracy, macro F1, UAR, per-class recall and per-group accuracy and UAR over the shared classes,
    and what was left out.

    Returns ``(metrics, details)``; ``details`` has the mapping, the number of images tested and left
    out, and the confusion matrix over the shared classes.
    """
    kept = shared_class_outputs(outputs, mapping)
    n = len(mapping.shared)
    details: dict[str, Any] = {
        **mapping.describe(),
        "images": len(kept["targets"]),
        "left_out_images": int(len(outputs["targets"]) - len(kept["targets"])),
    }
    if not len(kept["targets"]) or n < 2:
        return {}, details
    predicted = kept["logits"].argmax(dim=1)
    metrics = {
        f"{prefix}acc": float(multiclass_accuracy(predicted, kept["targets"], n, average="micro")),
        f"{prefix}f1_macro": float(multiclass_f1_score(predicted, kept["targets"], n, average="macro")),
    }
    metrics.update(
        recall_metrics(predicted, kept["targets"], kept["groups"], mapping.shared, group_names, prefix=prefix)
    )
    for index, name in enumerate(group_names):
        chosen = kept["groups"] == index
        if chosen.any():
            metrics[f"{prefix}acc_{name}"] = float((predicted[chosen] == kept["targets"][chosen]).float().mean())
    details["confusion_matrix"] = multiclass_confusion_matrix(predicted, kept["targets"], n).tolist()
    return metrics, details


def flag_shared_images(trained_on: str, details: dict[str, Any]) -> None:
    """Mark a cross-dataset test whose test set holds the training set's photographs (FER-2013 and FERPlus):
    ``details["shared_images"]`` is ``True`` and a warning says that its number is not a cross-dataset one."""
    details["shared_images"] = share_images(trained_on, str(details.get("dataset")))
    if details["shared_images"]:
        log.warning(
            "The cross-dataset test of %s on %s tests on the photographs it was trained on (relabelled): "
            "its numbers are flagged shared_images and measure label agreement, not generalisation",
            trained_on,
            details.get("dataset"),
        )

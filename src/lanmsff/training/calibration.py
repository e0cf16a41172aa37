"""How far a model's confidence can be trusted: calibration metrics and post-hoc temperature scaling.

* :func:`calibration_metrics`: expected calibration error (15 equal-width confidence bins, L1;
  torchmetrics' ``multiclass_calibration_error``), negative log-likelihood and the multi-class Brier
  score (mean over images of the squared distance between the probability vector and the one-hot
  label), overall and per group (KDEF camera angle).
* :func:`fit_temperature`: the temperature ``T`` that minimises the NLL of ``softmax(logits / T)``
  on held-out logits (Guo et al. 2017, "On Calibration of Modern Neural Networks"); it is fitted on
  the validation split only, never on test, and does not change any prediction (argmax is unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error

N_BINS = 15
_EPS = 1e-12


def _metrics(probs: torch.Tensor, targets: torch.Tensor, n_bins: int) -> dict[str, float]:
    num_classes = probs.shape[1]
    ece = multiclass_calibration_error(probs, targets, num_classes=num_classes, n_bins=n_bins, norm="l1")
    nll = F.nll_loss(probs.clamp_min(_EPS).log(), targets)
    brier = ((probs - F.one_hot(targets, num_classes).to(probs.dtype)) ** 2).sum(dim=1).mean()
    return {"ece": float(ece), "nll": float(nll), "brier": float(brier)}


def calibration_metrics(
    probs: torch.Tensor,
    targets: torch.Tensor,
    groups: torch.Tensor | None = None,
    group_names: Sequence[str] = (),
    *,
    prefix: str = "test/",
    n_bins: int = N_BINS,
) -> dict[str, float]:
    """``{prefix}ece``, ``{prefix}nll``, ``{prefix}brier`` and, per group, ``{prefix}ece_<group>`` etc.

    Args:
        probs: ``(N, C)`` class probabilities (rows sum to 1).
        targets: ``(N,)`` class indices.
        groups: ``(N,)`` group indices into ``group_names`` (e.g. camera angles), or ``None``.
        n_bins: confidence bins of the ECE (equal width on [0, 1]).
    """
    probs, targets = probs.float(), targets.long()
    if len(targets) == 0:
        return {}
    out = {f"{prefix}{k}": v for k, v in _metrics(probs, targets, n_bins).items()}
    if groups is not None:
        for index, name in enumerate(group_names):
            chosen = groups == index
            if chosen.any():
                part = _metrics(probs[chosen], targets[chosen], n_bins)
                out.update({f"{prefix}{k}_{name}": v for k, v in part.items()})
    return out


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Per confidence bin: its centre, mean confidence, accuracy and share of the images (for the diagram)."""
    confidence, predicted = probs.float().max(dim=1)
    correct = (predicted == targets).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    index = torch.bucketize(confidence, edges[1:-1], right=True)
    out: dict[str, list[float]] = {"centre": [], "confidence": [], "accuracy": [], "share": []}
    for b in range(n_bins):
        chosen = index == b
        out["centre"].append(float((edges[b] + edges[b + 1]) / 2))
        count = int(chosen.sum())
        out["share"].append(count / max(len(targets), 1))
        out["confidence"].append(float(confidence[chosen].mean()) if count else float("nan"))
        out["accuracy"].append(float(correct[chosen].mean()) if count else float("nan"))
    return out


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, max_iter: int = 200) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (LBFGS on ``log T``)."""
    logits, targets = logits.detach().double(), targets.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())

"""Figures people would rather look at than numbers: confusion matrices and accuracy per pose."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from lanmsff.utils.io import atomic_write


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write a figure atomically as PNG and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def confusion_matrix_figure(
    confusion: np.ndarray, class_names: Sequence[str], *, title: str = "Test confusion matrix"
) -> plt.Figure:
    """Row-normalised confusion matrix (rows: true class) with counts and percentages."""
    confusion = np.asarray(confusion, dtype=float)
    rates = confusion / np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.75 * n))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.0%}\n{int(confusion[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.55 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def group_accuracy_figure(
    accuracy: Mapping[str, float], *, overall: float | None = None, title: str = "Test accuracy per pose"
) -> plt.Figure:
    """Bar chart of accuracy per group (pose), with the overall accuracy as a line."""
    names, values = list(accuracy), [100 * accuracy[k] for k in accuracy]
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(names), 3.2))
    bars = ax.bar(names, values, color="#4c72b0")
    ax.bar_label(bars, fmt="%.1f")
    if overall is not None:
        ax.axhline(100 * overall, color="#dd8452", linestyle="--", label=f"overall {100 * overall:.1f}%")
        ax.legend(loc="lower right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    return fig

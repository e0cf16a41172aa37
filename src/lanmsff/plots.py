"""Figures people would rather look at than numbers: confusion matrices, accuracy per pose, comparisons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from lanmsff.utils.io import atomic_write


def save_figure(fig: plt.Figure, path: str | Path, *, dpi: int = 120, pdf: bool = False) -> Path:
    """Write a figure atomically as PNG (and with ``pdf`` as vector PDF next to it) and close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    if pdf:
        atomic_write(Path(path).with_suffix(".pdf"), lambda f: fig.savefig(f, format="pdf", bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def matrix_figure(
    rates: np.ndarray, class_names: Sequence[str], cell_text: Sequence[Sequence[str]], *, title: str
) -> plt.Figure:
    """A heat map of rates in [0, 1] (rows: true class, columns: predicted) with a text in every cell."""
    rates = np.asarray(rates, dtype=float)
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
            color = "white" if rates[i, j] > 0.55 else "black"
            ax.text(j, i, cell_text[i][j], ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def confusion_matrix_figure(
    confusion: np.ndarray, class_names: Sequence[str], *, title: str = "Test confusion matrix"
) -> plt.Figure:
    """Row-normalised confusion matrix (rows: true class) with counts and percentages."""
    confusion = np.asarray(confusion, dtype=float)
    rates = confusion / np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    text = [
        [f"{r:.0%}\n{int(c)}" for r, c in zip(rate_row, count_row)] for rate_row, count_row in zip(rates, confusion)
    ]
    return matrix_figure(rates, class_names, text, title=title)


def confusion_matrices_figure(
    confusions: Mapping[str, Any], class_names: Sequence[str], *, title: str = "Confusion matrix per pose"
) -> plt.Figure:
    """One row-normalised confusion matrix per group (pose) side by side, a shared colour scale, recall on the
    diagonal as text."""
    names = list(confusions)
    n = len(class_names)
    fig, axes = plt.subplots(1, len(names), figsize=(0.6 + 0.42 * n * len(names), 1.2 + 0.42 * n), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        counts = np.asarray(confusions[name], dtype=float)
        rates = counts / np.clip(counts.sum(axis=1, keepdims=True), 1, None)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            ax.text(i, i, f"{rates[i, i]:.0%}", ha="center", va="center", fontsize=6,
                    color="white" if rates[i, i] > 0.55 else "black")  # fmt: skip
        ax.set_xticks(range(n), class_names if ax is axes[0][0] else [""] * n, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names if ax is axes[0][0] else [""] * n, fontsize=7)
        ax.set_title(f"{name} ({int(counts.sum())})", fontsize=9)
    axes[0][0].set_ylabel("true")
    axes[0][0].set_xlabel("predicted")
    fig.suptitle(title)
    fig.tight_layout()
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


def rate_matrix_figure(
    rates: np.ndarray,
    class_names: Sequence[str],
    *,
    std: np.ndarray | None = None,
    title: str = "Mean confusion matrix",
) -> plt.Figure:
    """A matrix of rates in [0, 1] (e.g. the mean of row-normalised confusion matrices), in percent.

    With ``std`` each cell also shows its standard deviation over runs.
    """
    rates = np.asarray(rates, dtype=float)
    n = len(class_names)
    text = [[f"{rates[i, j]:.0%}" + ("" if std is None else f"\n±{std[i, j]:.0%}") for j in range(n)] for i in range(n)]
    return matrix_figure(rates, class_names, text, title=title)


def grouped_accuracy_figure(
    means: Mapping[str, Sequence[float]],
    groups: Sequence[str],
    *,
    stds: Mapping[str, Sequence[float]] | None = None,
    title: str = "Test accuracy per pose",
    ylabel: str = "accuracy (%)",
    ymax: float | None = 105,
) -> plt.Figure:
    """Grouped bars: for each group (pose) one bar per series (variant), values in [0, 1] shown in %.

    ``stds`` adds error bars (NaN: none). Missing values (NaN) leave a gap. ``ymax=None`` scales to the data.
    """
    names = list(means)
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(2.0 + len(groups) * max(1.2, 0.35 * len(names)), 4.0))
    for k, name in enumerate(names):
        values = 100 * np.asarray(means[name], dtype=float)
        errors = None if stds is None else np.nan_to_num(100 * np.asarray(stds[name], dtype=float))
        offset = (k - (len(names) - 1) / 2) * width
        ax.bar(x + offset, values, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, ymax)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _compact(x: float) -> str:
    """Tick label: 356k, 11.2M, 0.6."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def cost_accuracy_figure(
    labels: Sequence[str],
    cost: Sequence[float],
    accuracy: Sequence[float],
    *,
    accuracy_std: Sequence[float] | None = None,
    xlabel: str = "parameters",
    title: str = "Test accuracy vs cost",
    front: Sequence[bool] | None = None,
) -> plt.Figure:
    """Scatter of accuracy (in [0, 1], shown in %) against a cost on a log axis, each point labelled.

    Points with a missing or non-positive cost or a missing accuracy are left out. ``front`` marks the
    Pareto-optimal points (no other is both cheaper and more accurate): filled, joined by a step line.
    """
    cost, accuracy = np.asarray(cost, dtype=float), 100 * np.asarray(accuracy, dtype=float)
    errors = np.zeros_like(accuracy) if accuracy_std is None else np.nan_to_num(100 * np.asarray(accuracy_std, float))
    keep = np.isfinite(cost) & (cost > 0) & np.isfinite(accuracy)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.errorbar(cost[keep], accuracy[keep], yerr=errors[keep], fmt="o", capsize=3, color="#4c72b0")
    for label, x, y in zip(np.asarray(labels, dtype=object)[keep], cost[keep], accuracy[keep]):
        ax.annotate(str(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    if front is not None:
        on = np.asarray(front, dtype=bool) & keep
        order = np.argsort(cost[on])
        ax.plot(cost[on][order], accuracy[on][order], "-", drawstyle="steps-post", color="#dd8452", linewidth=1)
        ax.scatter(
            cost[on], accuracy[on], s=70, facecolors="none", edgecolors="#dd8452", label="Pareto front", zorder=3
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    if keep.any():  # pad by 1.6x on both sides: at least one 1-2-5 tick is always in view
        ax.set_xlim(cost[keep].min() / 1.6, cost[keep].max() * 1.6)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _compact(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"{xlabel} (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    return fig


def reliability_figure(
    bins: Mapping[str, Sequence[float]], *, ece: float | None = None, title: str = "Reliability"
) -> plt.Figure:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with each bin's share of images.

    ``bins`` as :func:`lanmsff.training.calibration.reliability_bins` returns them (centre, confidence,
    accuracy, share); empty bins are left out.
    """
    centre = np.asarray(bins["centre"], float)
    accuracy, confidence = np.asarray(bins["accuracy"], float), np.asarray(bins["confidence"], float)
    share = np.asarray(bins["share"], float)
    width = 1.0 / max(len(centre), 1)
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.2, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    kept = np.isfinite(accuracy)
    ax.bar(centre[kept], accuracy[kept], width=width * 0.95, color="#4c72b0", label="accuracy")
    ax.bar(
        centre[kept],
        confidence[kept] - accuracy[kept],
        bottom=accuracy[kept],
        width=width * 0.95,
        color="#dd8452",
        alpha=0.5,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], "--", color="#555", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title + ("" if ece is None else f": ECE {100 * ece:.1f}%"))
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centre, share, width=width * 0.95, color="#8c8c8c")
    hist.set_xlim(0, 1)
    hist.set_xlabel("confidence (max probability)")
    hist.set_ylabel("share")
    return fig


def learning_curves_figure(
    curves: Mapping[str, Any], metrics: Sequence[str] = ("train/loss", "val/loss", "train/acc", "val/acc")
) -> plt.Figure:
    """One panel per metric: each series' mean per epoch with a ±1 std band (``curves[name]`` has
    ``<metric>_mean`` and ``<metric>_std`` columns indexed by epoch)."""
    fig, axes = plt.subplots(2, 2, figsize=(9.0, 6.0), sharex=True)
    for ax, metric in zip(axes.ravel(), metrics):
        for name, table in curves.items():
            if f"{metric}_mean" not in table:
                continue
            mean = table[f"{metric}_mean"].astype(float)
            std = table[f"{metric}_std"].astype(float).fillna(0.0)
            (line,) = ax.plot(mean.index, mean, label=name, linewidth=1.2)
            ax.fill_between(mean.index, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(metric, fontsize=9)
        ax.grid(True, alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=7, bbox_to_anchor=(0.5, 1.04)
        )
    fig.tight_layout()
    return fig


def heatmap_figure(
    values: np.ndarray, row_labels: Sequence[str], column_labels: Sequence[str], *, title: str, xlabel: str, ylabel: str
) -> plt.Figure:
    """A rows x columns heat map of values in [0, 1], each cell written in percent (NaN: empty)."""
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(column_labels), 1.0 + 0.7 * len(row_labels)))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(column_labels)), column_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if np.isfinite(values[i, j]):
                color = "white" if values[i, j] > 0.55 else "black"
                ax.text(j, i, f"{values[i, j]:.1%}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


def track_probabilities_figure(
    tracks: Mapping[int, tuple[Sequence[float], Sequence[np.ndarray]]],
    class_names: Sequence[str],
    *,
    title: str = "Expressions over time",
    max_tracks: int = 8,
) -> plt.Figure:
    """Each video track's class probabilities over time as stacked areas, one panel per track.

    ``tracks`` maps a track id to its times (seconds) and probability vectors; the ``max_tracks``
    longest tracks are shown (the title says how many were left out).
    """
    shown = sorted(tracks, key=lambda t: -len(tracks[t][0]))[:max_tracks]
    shown.sort()
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 0.6 + 1.6 * len(shown)), sharex=True, squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, track in zip(axes[:, 0], shown):
        times, probs = tracks[track]
        values = np.asarray(probs, dtype=float).reshape(len(times), len(class_names))
        ax.stackplot(times, values.T, labels=class_names, colors=colors[: len(class_names)], alpha=0.85)
        ax.set_ylim(0, 1)
        ax.set_xlim(min(times), max(max(times), min(times) + 1e-3))
        ax.set_ylabel(f"track {track}")
        ax.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("time (s)")
    left_out = len(tracks) - len(shown)
    axes[0, 0].set_title(title + (f" ({left_out} shorter tracks not shown)" if left_out else ""))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return fig

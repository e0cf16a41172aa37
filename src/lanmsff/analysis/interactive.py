"""Interactive figures for report.html (plotly): hover values, series that can be toggled in the legend.

Each function returns an HTML ``<div>`` without the plotly library; :func:`plotly_library` gives the
library once, to be inlined into the page, so the page works offline (nothing is fetched).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs

CONFIG = {"displaylogo": False, "responsive": True}
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}, "height": 420}


def plotly_library() -> str:
    """The plotly.js bundle shipped with the plotly package (for one inline ``<script>``)."""
    return get_plotlyjs()


def _div(fig: go.Figure) -> str:
    fig.update_layout(**LAYOUT)
    return fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG)


def _finite(values: Any, scale: float = 1.0) -> list:
    return [None if v is None or pd.isna(v) else scale * float(v) for v in values]


def grouped_bars(
    means: Mapping[str, Sequence[float]],
    groups: Sequence[str],
    stds: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
) -> str:
    """One bar per variant and group (values in [0, 1], shown in %), error bars = std over runs."""
    fig = go.Figure()
    for name, values in means.items():
        errors = _finite(stds.get(name, [np.nan] * len(values)), 100.0)
        fig.add_bar(
            name=str(name),
            x=list(groups),
            y=_finite(values, 100.0),
            error_y={"type": "data", "array": [e or 0.0 for e in errors], "visible": True},
            hovertemplate=f"{name}<br>%{{x}}: %{{y:.2f}}%<extra></extra>",
        )
    fig.update_layout(title=title, barmode="group", yaxis_title=ylabel, legend_title="variant")
    return _div(fig)


def pareto(
    labels: Sequence[str],
    cost: Sequence[float],
    accuracy: Sequence[float],
    accuracy_std: Sequence[float],
    front: Sequence[bool],
    *,
    xlabel: str,
) -> str:
    """Accuracy against cost (log axis), the Pareto-optimal variants joined and circled."""
    cost, acc = np.asarray(cost, float), 100 * np.asarray(accuracy, float)
    std = np.nan_to_num(100 * np.asarray(accuracy_std, float))
    keep = np.isfinite(cost) & (cost > 0) & np.isfinite(acc)
    on = np.asarray(front, bool) & keep
    fig = go.Figure()
    fig.add_scatter(
        x=cost[keep],
        y=acc[keep],
        mode="markers+text",
        name="variants",
        text=list(np.asarray(labels, object)[keep]),
        textposition="top right",
        error_y={"type": "data", "array": std[keep]},
        hovertemplate="%{text}<br>" + xlabel + ": %{x:.4g}<br>accuracy %{y:.2f}%<extra></extra>",
    )
    order = np.argsort(cost[on])
    fig.add_scatter(
        x=cost[on][order],
        y=acc[on][order],
        mode="lines+markers",
        name="Pareto front",
        line={"shape": "hv"},
        marker={"size": 14, "symbol": "circle-open"},
        hoverinfo="skip",
    )
    fig.update_layout(
        title=f"Test accuracy vs {xlabel}",
        xaxis={"type": "log", "title": xlabel + " (log)"},
        yaxis_title="test accuracy (%)",
    )
    return _div(fig)


def learning_curves(curves: Mapping[str, pd.DataFrame]) -> str:
    """Loss and accuracy per epoch (train dashed, validation solid), mean with a ±1 std band per variant."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    colors = qualitative.Plotly
    for index, (name, table) in enumerate(curves.items()):
        color = colors[index % len(colors)]
        for column, metric in ((1, "loss"), (2, "acc")):
            for split, dash in (("train", "dash"), ("val", "solid")):
                key = f"{split}/{metric}"
                if f"{key}_mean" not in table:
                    continue
                _band(fig, table, key, name, color, dash, column, show=column == 1 and split == "val")
    fig.update_layout(title="Learning curves (solid: validation, dashed: training)", legend_title="variant")
    fig.update_xaxes(title_text="epoch")
    return _div(fig)


def _band(
    fig: go.Figure, table: pd.DataFrame, key: str, name: str, color: str, dash: str, col: int, show: bool
) -> None:
    epochs = list(table.index)
    mean = table[f"{key}_mean"].astype(float).to_numpy()
    std = np.nan_to_num(table[f"{key}_std"].astype(float).to_numpy())
    group = f"{name}"
    fig.add_scatter(
        x=epochs + epochs[::-1],
        y=list(mean + std) + list((mean - std)[::-1]),
        fill="toself",
        mode="lines",
        line={"width": 0},
        fillcolor=color,
        opacity=0.15,
        hoverinfo="skip",
        showlegend=False,
        legendgroup=group,
        row=1,
        col=col,
    )
    fig.add_scatter(
        x=epochs,
        y=_finite(mean),
        mode="lines",
        name=name,
        legendgroup=group,
        showlegend=show,
        line={"color": color, "dash": dash},
        hovertemplate=f"{name} {key}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
        row=1,
        col=col,
    )


def heatmap(matrix: pd.DataFrame, *, title: str) -> str:
    """A heat map of a rows x columns frame of fractions, cells in percent."""
    values = matrix.to_numpy(dtype=float) * 100
    text = [[("" if not np.isfinite(v) else f"{v:.1f}%") for v in row] for row in values]
    fig = go.Figure(
        go.Heatmap(
            z=[_finite(row) for row in values],
            x=list(map(str, matrix.columns)),
            y=list(map(str, matrix.index)),
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0,
            zmax=100,
            hovertemplate="trained on %{y}<br>tested on %{x}<br>accuracy %{z:.2f}%<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title=str(matrix.columns.name or ""), yaxis_title=str(matrix.index.name or ""))
    return _div(fig)

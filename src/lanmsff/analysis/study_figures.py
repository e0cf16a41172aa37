"""The figures of one study: static (matplotlib PNG + vector PDF, for report.md and papers) and interactive
(plotly, inlined into report.html): accuracy and ECE per angle, the accuracy-vs-cost Pareto view, learning
curves, the critical-difference diagram, the cross-dataset matrix, the mean confusion matrices and where the
network looks per view (MassAtt's mean attention, from the runs' ``attention/per_view.npz``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lanmsff import heatmaps, plots
from lanmsff.analysis import curves, interactive, stats
from lanmsff.analysis.tables import cross_matrix, mean_confusion, pareto_front

COSTS = (("params", 1.0, "parameters"), ("flops", 1e-9, "GFLOPs per image"))


@dataclass
class FigureItem:
    """One figure of the report: a static PNG (a PDF beside it) and, where there is one, an interactive version."""

    key: str
    caption: str
    png: Path
    html: str | None = None


def slug(name: str) -> str:
    """A file-name-safe version of ``name`` (with a short hash when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"
    return safe if safe == name else f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def per_group_series(summary: pd.DataFrame, stem: str) -> tuple[list[str], dict[str, list], dict[str, list]]:
    """Groups (``all`` + angles), and per variant the means and stds of ``<stem>`` / ``<stem>_<angle>``."""
    stems = [stem] + [c[: -len("_mean")] for c in summary if re.fullmatch(rf"{stem}_[A-Z]+_mean", c)]
    stems = [s for s in stems if f"{s}_mean" in summary and summary[f"{s}_mean"].notna().any()]
    groups = ["all" if s == stem else s.removeprefix(f"{stem}_") for s in stems]
    means = {r["variant"]: [r[f"{s}_mean"] for s in stems] for _, r in summary.iterrows()}
    stds = {r["variant"]: [r[f"{s}_std"] for s in stems] for _, r in summary.iterrows()}
    return groups, means, stds


class StudyFigures:
    """Builds the figures of one study into ``folder`` (PNG + PDF) with their interactive counterparts."""

    def __init__(self, runs: pd.DataFrame, summary: pd.DataFrame, folder: Path, *, interactive_html: bool = True):
        self.runs, self.summary, self.folder = runs, summary, folder
        self.interactive = interactive_html
        self.items: list[FigureItem] = []

    def _add(self, key: str, caption: str, fig: Any, name: str, html: str | None = None, *, pdf: bool = True) -> None:
        png = plots.save_figure(fig, self.folder / f"{name}.png", pdf=pdf)
        self.items.append(FigureItem(key, caption, png, html if self.interactive else None))

    def build(self, friedman: dict[str, stats.FriedmanResult] | None = None) -> list[FigureItem]:
        """Every figure that the study's runs have data for, in the order the report shows them; ``friedman``:
        the Friedman result of each group of variants (``""``: variants without ``@<group>``)."""
        self.per_group("acc", "per_angle", "Test accuracy per angle", "accuracy_per_angle", "accuracy (%)")
        self.cost()
        for group, result in sorted((friedman or {}).items()):
            self.critical_difference(group, result)
        self.learning_curves()
        self.per_group("ece", "ece_per_angle", "Expected calibration error per angle", "ece_per_angle", "ECE (%)")
        self.cross_dataset()
        self.confusions()
        self.attention()
        return self.items

    def per_group(self, stem: str, key: str, title: str, name: str, ylabel: str) -> None:
        groups, means, stds = per_group_series(self.summary, stem)
        if not groups:
            return
        ymax = 105 if stem == "acc" else None
        fig = plots.grouped_accuracy_figure(means, groups, stds=stds, title=title, ylabel=ylabel, ymax=ymax)
        html = interactive.grouped_bars(means, groups, stds, title=title, ylabel=ylabel)
        self._add(key, title, fig, name, html)

    def cost(self) -> None:
        s = self.summary
        if "acc_mean" not in s or s["acc_mean"].isna().all():
            return
        for key, scale, label in COSTS:
            cost = pd.to_numeric(s[key], errors="coerce").astype(float) * scale
            if not (cost > 0).any():
                continue
            front = pareto_front(cost, s["acc_mean"])
            title = f"Test accuracy vs {label}"
            fig = plots.cost_accuracy_figure(
                list(s["variant"]),
                cost,
                s["acc_mean"],
                accuracy_std=s["acc_std"],
                xlabel=label,
                title=title,
                front=front,
            )
            html = interactive.pareto(list(s["variant"]), cost, s["acc_mean"], s["acc_std"], front, xlabel=label)
            self._add(key, f"{title} (circled: the Pareto front)", fig, f"accuracy_vs_{key}", html)

    def critical_difference(self, group: str, result: stats.FriedmanResult) -> None:
        """The CD diagram of one group of variants (``""``: the study's variants without ``@<group>``)."""
        where = f", {group}" if group else ""
        caption = f"Critical-difference diagram (test accuracy{where}; {stats.FOLD_BLOCKS_CAVEAT})"
        name = f"critical_difference_{slug(group)}" if group else "critical_difference"
        self._add(f"cd:{group}", caption, stats.critical_difference_figure(result), name)

    def learning_curves(self) -> None:
        found = curves.variant_curves(self.runs)
        if found:
            caption = "Learning curves: mean ± std over each variant's runs"
            self._add(
                "curves",
                caption,
                plots.learning_curves_figure(found),
                "learning_curves",
                interactive.learning_curves(found),
            )

    def cross_dataset(self) -> None:
        matrix = cross_matrix(self.runs)
        if matrix.empty:
            return
        title = "Cross-dataset test accuracy (shared classes)"
        fig = plots.heatmap_figure(
            matrix.to_numpy(),
            list(matrix.index),
            list(matrix.columns),
            title=title,
            xlabel="tested on",
            ylabel="trained on",
        )
        self._add("cross", title, fig, "cross_dataset", interactive.heatmap(matrix, title=title))

    def confusions(self) -> None:
        for variant, group in self.runs.groupby("variant", sort=True):
            confusion = mean_confusion(group)
            if confusion is None:
                continue
            mean, std, classes = confusion
            title = f"{variant}: mean confusion (rows: true)"
            fig = plots.rate_matrix_figure(mean, classes, std=std, title=title)
            caption = f"Mean row-normalised confusion matrix: {variant}"  # PNG only: one per variant adds up
            self._add(f"confusion:{variant}", caption, fig, f"confusion_{slug(str(variant))}", pdf=False)

    def attention(self) -> None:
        """Per variant, MassAtt's spatial attention per view, pooled over the test images of its successful runs
        that wrote ``attention/per_view.npz``; variants without any such run are named in the caption."""
        found: dict[str, heatmaps.PerViewAttention] = {}
        runs_used, without = 0, []
        for variant, group in self.runs.groupby("variant", sort=True):
            ok = group[group["status"] == "ok"]
            files = [Path(d) / heatmaps.NPZ_FILE for d in ok["run_dir"] if isinstance(d, str) and d]
            records = [heatmaps.PerViewAttention.load(f) for f in files if f.is_file()]
            if records:
                found[str(variant)] = heatmaps.pooled(records)
                runs_used += len(records)
            else:
                without.append(str(variant))
        if not found:
            return
        title = "Where the network looks: mean MassAtt spatial attention per view"
        fig = heatmaps.per_view_figure(found, title=title)
        caption = (
            f"{title} over the test images of {runs_used} runs (each map stretched from its own minimum, blue, to "
            "its maximum, red, written under it: colours compare places within a view)"
        )
        if without:
            caption += f"; no attention maps: {', '.join(without)}"
        self._add("attention", caption, fig, "attention_per_view", pdf=False)

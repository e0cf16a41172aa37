"""Aggregates and tables of a comparison: mean ± std per study and variant, the mean confusion matrix.

Accuracies are fractions in the data frames and CSV files and percentages in the tables. ``std`` is
the sample standard deviation (ddof=1) over the successful runs of a variant (its folds and seeds);
it is empty for a single run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from lanmsff.analysis.loading import COST_COLUMNS, metric_order


# ---------------------------------------------------------------------------------------------- aggregation
def ordered_angles(runs: pd.DataFrame) -> list[str]:
    """The groups (KDEF angles first, in FL HL S HR FR order) that have a ``test/acc_<group>`` column."""
    groups = [
        c.removeprefix("test/acc_") for c in sorted((c for c in runs if c.startswith("test/acc_")), key=metric_order)
    ]
    return [g for g in groups if pd.to_numeric(runs[f"test/acc_{g}"], errors="coerce").notna().any()]


def class_names(runs: pd.DataFrame) -> list[str]:
    """The classes of the runs with a ``test/recall_<class>`` column: in the runs' class order, then by name."""
    recalls = {c.removeprefix("test/recall_") for c in runs if c.startswith("test/recall_")}
    listed = next((c for c in runs["classes"] if isinstance(c, list)), []) if "classes" in runs else []
    return [str(c) for c in listed if str(c) in recalls] + sorted(recalls - {str(c) for c in listed})


def summary_metrics(runs: pd.DataFrame) -> list[str]:
    """The accuracy metrics a comparison reports: accuracy, UAR, macro F1, per angle, UAR per angle, best val
    accuracy, the accuracy of the other checkpoint where the runs tested both (``test_best/acc``,
    ``test_last/acc``) and the recall per class (``test/recall_<class>``)."""
    angles = ordered_angles(runs)
    per_angle = [f"test/acc_{a}" for a in angles] + [f"test/uar_{a}" for a in angles]
    recalls = [f"test/recall_{c}" for c in class_names(runs)]
    wanted = ("test/acc", "test/uar", "test/f1_macro", *per_angle, "val/acc_best", "test_best/acc", "test_last/acc")
    return [m for m in (*wanted, *recalls) if m in runs]


CALIBRATION_METRICS = ("test/ece", "test/nll", "test/brier", "test_temperature/ece", "test_temperature/nll")


def calibration_metrics(runs: pd.DataFrame) -> list[str]:
    """ECE, NLL and Brier score on the test set, ECE per angle, and after temperature scaling where run."""
    per_angle = [f"test/ece_{a}" for a in ordered_angles(runs)]
    return [m for m in (*CALIBRATION_METRICS[:3], *per_angle, *CALIBRATION_METRICS[3:]) if m in runs]


def cross_metrics(runs: pd.DataFrame) -> list[str]:
    """``cross/<dataset>/acc`` columns: accuracy of each run on other datasets' test splits."""
    return sorted(c for c in runs if c.startswith("cross/") and c.endswith("/acc"))


def metric_name(metric: str) -> str:
    """Column stem in :func:`summarise`: ``test/acc`` -> ``acc``, ``test/acc_FL`` -> ``acc_FL``,
    ``val/acc_best`` -> ``val_acc_best``."""
    return metric.removeprefix("test/").replace("/", "_")


def _most_common(values: pd.Series) -> Any:
    values = values.dropna()
    return values.mode().iloc[0] if len(values) else None


def _summarise_variant(group: pd.DataFrame, metrics: Sequence[str]) -> dict[str, Any]:
    ok = group[group["status"] == "ok"]
    row: dict[str, Any] = {
        "study": group["study"].iloc[0],
        "variant": group["variant"].iloc[0],
        "runs": len(ok),
        "failed": len(group) - len(ok),
    }
    for metric in metrics:
        values = pd.to_numeric(ok[metric], errors="coerce").dropna()
        row[f"{metric_name(metric)}_mean"] = values.mean() if len(values) else math.nan
        row[f"{metric_name(metric)}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
    for column in COST_COLUMNS:
        row[column] = _most_common(ok[column] if len(ok) else group[column])
    return row | _labels(ok if len(ok) else group)


LABEL_COLUMNS = ["protocol", "identities_shared", "selection"]


def _labels(runs: pd.DataFrame) -> dict[str, Any]:
    """A variant's protocol labels: its protocols and selections (joined with ``+`` when several), and
    whether any of its runs shared identities between training and test."""

    def joined(column: str) -> str | None:
        values = sorted({str(v) for v in runs[column].dropna()}) if column in runs else []
        return "+".join(values) or None

    shared = bool(runs["identities_shared"].fillna(False).astype(bool).any()) if "identities_shared" in runs else False
    return {"protocol": joined("protocol"), "identities_shared": shared, "selection": joined("selection")}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, variant): ``runs`` (ok), ``failed`` (every other status), ``<metric>_mean``
    and ``<metric>_std`` for the accuracy, calibration and cross-dataset metrics (named by
    :func:`metric_name`), the cost ``params``, ``flops`` (per image) and ``model_size_mb``, and the labels
    ``protocol``, ``identities_shared`` and ``selection`` (:mod:`lanmsff.analysis.loading`).
    """
    metrics = [*summary_metrics(runs), *calibration_metrics(runs), *cross_metrics(runs)]
    rows = [_summarise_variant(g, metrics) for _, g in runs.groupby(["study", "variant"], sort=True)]
    columns = ["study", "variant", "runs", "failed"]
    columns += [f"{metric_name(m)}_{s}" for m in metrics for s in ("mean", "std")] + COST_COLUMNS + LABEL_COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    for column in ("params", "flops"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def mean_confusion(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None, list[str]] | None:
    """Mean and sample std (``None`` for one run) of the row-normalised test confusion matrices of
    the ok runs (those of the first one's shape), with the class names; ``None`` when no run has one.
    """
    return _mean_matrices(runs, list(runs.loc[runs["status"] == "ok", "confusion_matrix"]))


def mean_group_confusions(runs: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray | None, list[str]]]:
    """Per pose (KDEF angles first, in FL HL S HR FR order): :func:`mean_confusion` of the ok runs'
    ``confusion_matrix_per_group`` ({angle: counts}); empty when no run recorded one."""
    column = "confusion_matrix_per_group"
    tables = [t for t in runs.loc[runs["status"] == "ok", column] if isinstance(t, dict)] if column in runs else []
    groups = sorted({str(g) for t in tables for g in t}, key=lambda g: metric_order(f"test/acc_{g}"))
    found = {g: _mean_matrices(runs, [t.get(g) for t in tables]) for g in groups}
    return {g: value for g, value in found.items() if value is not None}


def _mean_matrices(runs: pd.DataFrame, values: list[Any]) -> tuple[np.ndarray, np.ndarray | None, list[str]] | None:
    matrices = [np.asarray(m, float) for m in values if _is_matrix(m)]
    if not matrices:
        return None
    matrices = [m for m in matrices if m.shape == matrices[0].shape]
    rates = np.stack([m / np.clip(m.sum(axis=1, keepdims=True), 1, None) for m in matrices])
    classes = next((c for c in runs["classes"] if isinstance(c, list) and len(c) == len(rates[0])), None)
    std = rates.std(axis=0, ddof=1) if len(rates) > 1 else None
    return rates.mean(axis=0), std, [str(c) for c in classes or range(len(rates[0]))]


def _is_matrix(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) > 0 and all(isinstance(r, list) and len(r) == len(value) for r in value)
    )


# ---------------------------------------------------------------------------------------------- tables
def _pct(mean: Any, std: Any) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if std is None or pd.isna(std) else f" ± {100 * std:.2f}")


def _count(value: Any, fmt: str = "{:,.0f}", scale: float = 1.0) -> str:
    return "–" if value is None or pd.isna(value) else fmt.format(float(value) * scale)


ACCURACY_LABELS = {
    "acc": "accuracy %",
    "uar": "UAR %",
    "f1_macro": "macro F1 %",
    "val_acc_best": "best val acc %",
    "test_best_acc": "accuracy, best-val ckpt %",
    "test_last_acc": "accuracy, last weights %",
}
TEST_FOLD = "test-fold"
SHARED_MARK = "⚠ identities shared"
TEST_FOLD_MARK = f"⚠ selection: {TEST_FOLD}"
FOOTNOTES = {
    SHARED_MARK: f"{SHARED_MARK}: these runs split the images, not the people (the image-level protocols "
    "stratified and paper): the same people are in training and test, so their numbers measure faces the model "
    "has seen and are not comparable with person-independent ones (subject, cross_pose).",
    TEST_FOLD_MARK: f"{TEST_FOLD_MARK}: these runs validated on their test fold (data.protocol=paper): early "
    "stopping, the learning-rate schedule and the checkpoint choice (test_best/...) saw the test set, so their "
    "test numbers are optimistic and not comparable with validation-selected ones.",
}


def _is_true(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) and bool(value)


def variant_marks(row: Any) -> list[str]:
    """The marks of a summary row (:func:`summarise`): identities shared (with the protocol), test-fold selection."""
    marks = []
    if _is_true(row.get("identities_shared")):
        protocol = row.get("protocol")
        marks.append(f"{SHARED_MARK} ({protocol if isinstance(protocol, str) else 'image-level'})")
    if TEST_FOLD in str(row.get("selection") or ""):
        marks.append(TEST_FOLD_MARK)
    return marks


def variant_label(row: Any) -> str:
    """The variant's name followed by its :func:`variant_marks`, as every table of the report shows it."""
    return " ".join([str(row["variant"]), *variant_marks(row)])


def footnotes(rows: pd.DataFrame) -> list[str]:
    """The explanation of each mark that some row of ``rows`` (a summary) carries."""
    marks = {m for _, r in rows.iterrows() for m in variant_marks(r)}
    return [text for mark, text in FOOTNOTES.items() if any(m.startswith(mark) for m in marks)]


def selected_on_test_fold(rows: pd.DataFrame) -> bool:
    """Whether some variant of these summary rows chose its epochs or checkpoint on the test fold."""
    return "selection" in rows and rows["selection"].astype(str).str.contains(TEST_FOLD).any()


def accuracy_label(stem: str, test_fold: bool = False) -> str:
    """Column header of a metric stem; ``test_best_...`` is labelled ``selection: test-fold`` when ``test_fold``."""
    label = ACCURACY_LABELS.get(stem, stem.removeprefix("acc_"))
    return f"{label} (selection: {TEST_FOLD})" if test_fold and stem.startswith("test_best_") else label


def _is_detail(stem: str) -> bool:
    return _is_calibration(stem) or stem.startswith(("cross_", "recall_", "uar_"))


def display_table(summary: pd.DataFrame, study: str) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows of one study's accuracy comparison (percentages, GFLOPs, MiB); variants
    carry their :func:`variant_marks`."""
    rows = summary[summary["study"] == study]
    stems = [c[: -len("_mean")] for c in rows if c.endswith("_mean")]
    metrics = [m for m in stems if rows[f"{m}_mean"].notna().any() and not _is_detail(m)]
    test_fold = selected_on_test_fold(rows)
    headers = ["variant", "runs", "failed", *(accuracy_label(m, test_fold) for m in metrics)]
    headers += ["params", "GFLOPs", "size MiB"]
    body = [
        [variant_label(r), str(r["runs"]), str(r["failed"])]
        + [_pct(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
        + [_count(r["params"]), _count(r["flops"], "{:.3f}", 1e-9), _count(r["model_size_mb"], "{:.2f}")]
        for _, r in rows.iterrows()
    ]
    return headers, body


def prefixed_table(summary: pd.DataFrame, study: str, prefix: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the ``<prefix><name>`` metrics of one study (e.g. ``recall_``: recall per class,
    ``uar_``: UAR per angle), mean ± std in %; a dash where a run did not record it. Empty when none did."""
    rows = summary[summary["study"] == study]
    stems = [c[: -len("_mean")] for c in rows if c.endswith("_mean")]
    stems = [m for m in stems if m.startswith(prefix) and rows[f"{m}_mean"].notna().any()]
    if not stems:
        return [], []
    headers = ["variant", *(f"{m.removeprefix(prefix)} %" for m in stems)]
    body = [[variant_label(r)] + [_pct(r[f"{m}_mean"], r[f"{m}_std"]) for m in stems] for _, r in rows.iterrows()]
    return headers, body


def _is_calibration(stem: str) -> bool:
    return stem.startswith(("ece", "nll", "brier", "test_temperature_"))


def calibration_table(summary: pd.DataFrame, study: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of one study's calibration: ECE (%), NLL, Brier, ECE per angle, after temperature."""
    rows = summary[summary["study"] == study]
    stems = [c[: -len("_mean")] for c in rows if c.endswith("_mean") and _is_calibration(c[: -len("_mean")])]
    stems = [m for m in stems if rows[f"{m}_mean"].notna().any()]
    if not stems:
        return [], []
    labels = {
        "ece": "ECE %",
        "nll": "NLL",
        "brier": "Brier",
        "test_temperature_ece": "ECE after T %",
        "test_temperature_nll": "NLL after T",
    }
    headers = ["variant", *(labels.get(m, f"ECE {m.removeprefix('ece_')} %") for m in stems)]
    body = []
    for _, r in rows.iterrows():
        cells = [variant_label(r)]
        for m in stems:
            scale = 1.0 if m.endswith(("nll", "brier")) else 100.0
            cells.append(_number(r[f"{m}_mean"], r[f"{m}_std"], scale))
        body.append(cells)
    return headers, body


def _number(mean: Any, std: Any, scale: float) -> str:
    if mean is None or pd.isna(mean):
        return "–"
    digits = 2 if scale == 100.0 else 3
    return f"{scale * mean:.{digits}f}" + ("" if std is None or pd.isna(std) else f" ± {scale * std:.{digits}f}")


def cross_matrix(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy (fractions) of the ok runs with cross-dataset tests: rows = the dataset trained on
    (the run's ``dataset``), columns = the dataset tested on; empty when no run tested across datasets."""
    columns = cross_metrics(runs)
    ok = runs[(runs["status"] == "ok") & runs[columns].notna().any(axis=1)] if columns else runs.iloc[0:0]
    if ok.empty:
        return pd.DataFrame()
    frame = ok[["dataset", *columns]].copy()
    frame["dataset"] = frame["dataset"].fillna("unknown")
    matrix = frame.groupby("dataset").mean(numeric_only=True)
    matrix.columns = [c.removeprefix("cross/").removesuffix("/acc") for c in matrix.columns]
    matrix.index.name, matrix.columns.name = "trained on", "tested on"
    return matrix


def failed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose status is not ok, with their errors."""
    return runs.loc[runs["status"] != "ok", ["study", "variant", "fold", "seed", "status", "error", "source"]]


def print_tables(summary: pd.DataFrame, console: Console | None = None) -> None:
    """Print one rich table per study (accuracies as mean ± std in %), the marks of its variants explained
    under it (:func:`footnotes`)."""
    console = console or Console()
    for study in summary["study"].unique():
        headers, body = display_table(summary, study)
        notes = footnotes(summary[summary["study"] == study])
        title = f"{study}: mean ± std over folds/seeds"
        table = Table(title=title, caption="\n".join(notes) or None, caption_justify="left")
        for i, header in enumerate(headers):
            table.add_column(header, justify="left" if i == 0 else "right", overflow="fold", no_wrap=i == 0)
        for row in body:
            table.add_row(row[0].replace(" ⚠", "\n⚠"), *row[1:])  # each mark on a line of its own
        console.print(table)


def pareto_front(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Which points are Pareto-optimal: no other point is at most as costly and at least as accurate,
    and strictly better in one of the two. Points with a missing cost or accuracy are never on it."""
    c, a = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    valid = np.isfinite(c) & np.isfinite(a) & (c > 0)
    front = np.zeros(len(c), dtype=bool)
    for i in np.flatnonzero(valid):
        dominated = valid & (c <= c[i]) & (a >= a[i]) & ((c < c[i]) | (a > a[i]))
        front[i] = not dominated.any()
    return front

"""What a study's section of the report leads with: one table and the lines that qualify its numbers.

The lead table has a row per variant and a column per headline metric (accuracy, UAR, macro F1, the
accuracy per view): mean ± std over folds and seeds, and in brackets the paired difference to the
variant's reference in points, starred where the corrected resampled t-test (Holm-adjusted) finds it
(McNemar's test for a single split). The lines say what the numbers cannot show: identities shared
between training and test, test-fold selection, protocols mixed in one study, hyper-parameters tuned on
people that test folds contain.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from lanmsff.analysis.comparisons import ALPHA, Mark, StudyStatistics, TableBlock, split_variant
from lanmsff.analysis.tables import footnotes, metric_name, ordered_angles, variant_label

HEADLINE = {"test/acc": "accuracy %", "test/uar": "UAR %", "test/f1_macro": "macro F1 %"}
MINUS = "−"


def lead_metrics(runs: pd.DataFrame) -> list[str]:
    """Accuracy, UAR and macro F1 (always: a dash where no run recorded one), then the accuracy per view."""
    return [*HEADLINE, *(f"test/acc_{a}" for a in ordered_angles(runs))]


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", MINUS)


def lead_cell(mean: Any, std: Any, mark: Mark | None = None) -> str:
    """``80.1 ± 2.0 (−1.2*)``: mean ± std of fractions, in %, and the difference to the reference (points)."""
    if mean is None or pd.isna(mean):
        return "–"
    text = f"{100 * mean:.1f}" + ("" if std is None or pd.isna(std) else f" ± {100 * std:.1f}")
    if mark is None or not math.isfinite(mark.difference):
        return text
    return f"{text} ({_signed(mark.difference)}{'*' if mark.significant else ''})"


def _header(metric: str) -> str:
    return HEADLINE.get(metric) or f"{metric.removeprefix('test/acc_')} %"


def lead_table(summary: pd.DataFrame, runs: pd.DataFrame, statistics: StudyStatistics) -> TableBlock:
    """The one table a study's section leads with (rows of ``summary`` for that study, its ``runs``): a row per
    variant, by group with the group's reference first."""
    metrics = lead_metrics(runs)
    rows = []
    for _, r in _in_order(summary, statistics).iterrows():
        variant, failed = str(r["variant"]), int(r["failed"])
        cells = [variant_label(r), f"{r['runs']}" + (f" (+{failed} failed)" if failed else "")]
        for metric in metrics:
            stem = metric_name(metric)
            mean, std = r.get(f"{stem}_mean"), r.get(f"{stem}_std")
            cells.append(lead_cell(mean, std, statistics.marks.get((variant, metric))))
        rows.append(cells)
    title = "mean ± std over folds and seeds (difference to the reference)"
    return TableBlock(title, ["variant", "runs", *map(_header, metrics)], rows, legend(statistics))


def _in_order(summary: pd.DataFrame, statistics: StudyStatistics) -> pd.DataFrame:
    """The rows by group (``@<group>``), each group's reference first, then by name."""
    references = set(statistics.references.values())
    keys = [(split_variant(v)[1], v not in references, v) for v in summary["variant"].astype(str)]
    return summary.iloc[sorted(range(len(keys)), key=keys.__getitem__)]


def legend(statistics: StudyStatistics) -> str:
    """The lead table's legend: what the cells, brackets and stars mean."""
    refs = sorted(set(statistics.references.values())) or ([statistics.reference] if statistics.reference else [])
    test = (
        "McNemar's exact test, Holm-adjusted, significant for every seed"
        if statistics.kind == "single split"
        else "corrected resampled t-test, Holm-adjusted"
    )
    where = f" ({', '.join(refs)})" if refs else ""
    return (
        f"Test metrics in %, mean ± std over each variant's successful runs. In brackets: the paired difference "
        f"to the reference{where} in points; * = significant at α = {ALPHA:g} ({test}). "
        "– = not recorded (runs written before UAR existed have none)."
    )


# ---------------------------------------------------------------------------------------------- the lines
def reference_note(statistics: StudyStatistics) -> str:
    """``Reference: lanmsff`` (with each group's reference variant where the variants have groups)."""
    if statistics.reference is None:
        return ""
    grouped = {g: v for g, v in statistics.references.items() if g}
    if not grouped:
        return f"Reference: {statistics.reference}."
    within = ", ".join(grouped[g] for g in sorted(grouped))
    return (
        f"Reference: {statistics.reference}; variants named MODEL@GROUP are compared within their group only: {within}."
    )


def mixed_protocol_line(summary: pd.DataFrame) -> str | None:
    """A line when a study's variants come from different protocols or selections (None when they do not)."""
    described = {
        str(r["variant"]): (r.get("protocol") if isinstance(r.get("protocol"), str) else None, str(r.get("selection")))
        for _, r in summary.iterrows()
        if r["runs"] > 0
    }
    protocols = {p for p, _ in described.values() if p}
    selections = {s for _, s in described.values()}
    if len(protocols) < 2 and len(selections) < 2 and not any("+" in f"{p}{s}" for p, s in described.values()):
        return None
    parts = "; ".join(f"{v}: {p or 'protocol unknown'}, selection {s}" for v, (p, s) in sorted(described.items()))
    line = f"⚠ This study mixes protocols ({parts}): its tables and tests set different protocols' numbers side by side"
    if len(selections) > 1 or any("+" in s for _, s in described.values()):
        line += "; test-fold-selected numbers are paired with validation-selected ones, which are not comparable"
    return line + "."


def hyperparameter_lines(runs: pd.DataFrame) -> list[str]:
    """Lines for runs whose hyper-parameters were tuned on a fold's validation people, or searched."""
    lines = []
    tuned = runs["hparams_tuned_on_fold"] if "hparams_tuned_on_fold" in runs else pd.Series(dtype=float)
    folds = pd.to_numeric(tuned, errors="coerce").dropna().astype(int).unique()
    for fold in sorted(folds):
        lines.append(
            f"⚠ hyper-parameters were tuned on the validation people of fold {fold}; test folds that contain "
            "those people are not independent of the tuning."
        )
    searches = runs["hparams_search"].dropna().astype(str) if "hparams_search" in runs else pd.Series(dtype=str)
    for name, count in sorted(searches.value_counts().items()):
        lines.append(
            f"⚠ {count} run(s) ran inside a hyper-parameter search (hparams_search={name}): the search chose "
            "among them on its objective, so the best of them is an optimistic estimate."
        )
    return lines


def study_lines(summary: pd.DataFrame, runs: pd.DataFrame, statistics: StudyStatistics) -> list[str]:
    """The lines under a study's verdicts: its reference, then every caveat its numbers carry."""
    lines = [reference_note(statistics), *footnotes(summary), mixed_protocol_line(summary)]
    return [line for line in [*lines, *hyperparameter_lines(runs)] if line]

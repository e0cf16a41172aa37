"""The statistics of one study, as the report shows them: verdicts first, then the tables behind them.

* A k-fold study (runs with folds): every variant against the study's reference and every pair,
  paired by (fold, seed), with the corrected resampled t-test, Wilcoxon and Holm
  (:func:`lanmsff.analysis.stats.paired_table`) for test accuracy, macro F1 and the accuracy per angle;
  with 3 or more variants Friedman's test over the folds and a critical-difference diagram.
* A single-split study (no folds: FER-2013, FERPlus): per run a bootstrap 95% CI of the test accuracy
  from its ``predictions.csv``, and McNemar's exact test between each variant and the reference on the
  same test images (runs paired by seed, images by file).

Runs that cannot be paired are never paired: they are listed with the reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lanmsff.analysis import stats
from lanmsff.analysis.tables import ordered_angles

log = logging.getLogger(__name__)

ALPHA = 0.05
DEFAULT_REFERENCE = "lanmsff"
PREDICTIONS_FILE = "predictions.csv"
MATCH = "test_hash"  # runs are paired only when they were scored on the same test images


@dataclass
class TableBlock:
    """A titled table of formatted cells (the report renders it as markdown and as a sortable HTML table)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class StudyStatistics:
    """What the report says about one study's differences."""

    kind: str  # "folds", "single split" or "none"
    reference: str | None
    verdicts: list[str] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    friedman: stats.FriedmanResult | None = None
    left_out: list[stats.LeftOut] = field(default_factory=list)


def reference_variant(variants: list[str], requested: str | None = None) -> str | None:
    """The study's reference: ``requested`` if it is one of the variants, else ``lanmsff``, else the first."""
    for name in (requested, DEFAULT_REFERENCE):
        if name in variants:
            return name
    return sorted(variants)[0] if variants else None


def _p(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _points(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2f}"


def _paired_rows(table: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in table.itertuples():
        ci = f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if math.isfinite(r.ci_low) else "–"
        diff = "–" if not math.isfinite(r.difference) else f"{r.difference:+.2f}"
        rows.append(
            [
                r.a,
                r.b,
                str(r.n),
                _points(r.mean_a),
                _points(r.mean_b),
                diff,
                ci,
                _p(r.p),
                _p(r.p_holm),
                _p(r.p_wilcoxon),
            ]
        )
    return rows


PAIRED_HEADERS = ["A", "B", "pairs", "A %", "B %", "A − B (points)", "95% CI", "p", "p (Holm)", "p (Wilcoxon)"]
PAIRED_NOTE = (
    "Runs paired by (fold, seed). p: Nadeau & Bengio's corrected resampled t-test (variance inflated by "
    "1/k + n_test/n_train, k − 1 degrees of freedom); Holm over the rows of the table; Wilcoxon signed-rank "
    "as a distribution-free check."
)


def _metric_label(metric: str) -> str:
    labels = {"test/acc": "test accuracy", "test/f1_macro": "macro F1"}
    return labels.get(metric) or f"accuracy {metric.removeprefix('test/acc_')}"


def fold_statistics(runs: pd.DataFrame, reference: str, alpha: float = ALPHA) -> StudyStatistics:
    """Paired tests over the folds of one study (ok runs with folds), verdicts on test accuracy."""
    result = StudyStatistics("folds", reference)
    metrics = ["test/acc", "test/f1_macro"] + [f"test/acc_{a}" for a in ordered_angles(runs)]
    metrics = [m for m in metrics if m in runs and runs[m].notna().any()]
    variants = sorted(runs["variant"].astype(str).unique())
    left: dict[tuple, stats.LeftOut] = {}
    for metric in metrics:
        table, unpaired = stats.paired_table(runs, metric, reference, alpha=alpha, match=MATCH)
        left.update({(x.variant, x.fold, x.seed, x.reason): x for x in unpaired})
        if metric == "test/acc":
            result.verdicts = list(table["verdict"])
        title = f"{_metric_label(metric)}: each variant vs {reference}"
        result.tables.append(TableBlock(title, PAIRED_HEADERS, _paired_rows(table), PAIRED_NOTE))
    if len(variants) > 2 and "test/acc" in metrics:
        table, _ = stats.paired_table(runs, "test/acc", None, alpha=alpha, match=MATCH)
        result.tables.append(TableBlock("test accuracy: every pair", PAIRED_HEADERS, _paired_rows(table), PAIRED_NOTE))
        result.friedman = _friedman(runs, alpha, result)
    result.left_out = list(left.values())
    return result


def _friedman(runs: pd.DataFrame, alpha: float, result: StudyStatistics) -> stats.FriedmanResult | None:
    scores, _ = stats.score_matrix(runs, "test/acc", match=MATCH)
    try:
        friedman = stats.friedman_test(scores, alpha)
    except (ValueError, ImportError) as err:
        log.warning("no Friedman test for this study: %s", err)
        return None
    ranks = ", ".join(f"{v} {r:.2f}" for v, r in friedman.mean_ranks.items())
    result.verdicts.append(
        f"Friedman over {friedman.n_blocks} folds/seeds: χ² = {friedman.statistic:.2f}, p = {_p(friedman.pvalue)}; "
        f"mean ranks (1 = best): {ranks}; critical difference {friedman.critical_difference:.2f}"
    )
    return friedman


def _predictions(run_dir: Any) -> pd.DataFrame | None:
    if not isinstance(run_dir, str) or not (Path(run_dir) / PREDICTIONS_FILE).is_file():
        return None
    try:
        table = pd.read_csv(Path(run_dir) / PREDICTIONS_FILE)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        log.warning("cannot read %s: %s", Path(run_dir) / PREDICTIONS_FILE, err)
        return None
    return table if {"label", "predicted"} <= set(table.columns) else None


def _correct(table: pd.DataFrame) -> pd.Series:
    keys = table["file"].astype(str) if "file" in table and table["file"].notna().all() else table.index
    return pd.Series((table["label"] == table["predicted"]).to_numpy(), index=keys)


def single_split_statistics(runs: pd.DataFrame, reference: str, alpha: float = ALPHA) -> StudyStatistics:
    """Bootstrap CIs of each run's test accuracy and McNemar's test of each variant vs the reference."""
    result = StudyStatistics("single split", reference)
    correct: dict[tuple[str, Any], pd.Series] = {}
    ci_rows = []
    for r in runs.itertuples():
        table = _predictions(r.run_dir)
        if table is None or not len(table):
            result.left_out.append(stats.LeftOut(str(r.variant), r.fold, r.seed, f"no readable {PREDICTIONS_FILE}"))
            continue
        series = _correct(table)
        correct[(str(r.variant), r.seed)] = series
        ci = stats.bootstrap_accuracy_ci(series.to_numpy())
        ci_rows.append([str(r.variant), str(r.seed), f"{ci.accuracy:.2f}", f"[{ci.low:.2f}, {ci.high:.2f}]", str(ci.n)])
    result.tables.append(
        TableBlock(
            "test accuracy with a bootstrap 95% CI (test images resampled, BCa)",
            ["variant", "seed", "accuracy %", "95% CI", "test images"],
            ci_rows,
        )
    )
    result.verdicts, rows = _mcnemar_rows(correct, reference, alpha, result)
    headers = ["A", "B", "seed", "images", "A − B (points)", "95% CI", "p", "p (Holm)", "discordant"]
    note = "McNemar's exact test on the images both runs classified (runs paired by seed); Holm over the table."
    result.tables.append(TableBlock(f"McNemar: each variant vs {reference}", headers, rows, note))
    return result


def _mcnemar_rows(
    correct: dict[tuple[str, Any], pd.Series], reference: str, alpha: float, result: StudyStatistics
) -> tuple[list[str], list[list[str]]]:
    tests = []
    for (variant, seed), series in sorted(correct.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        if variant == reference:
            continue
        partner = correct.get((reference, seed))
        if partner is None:
            result.left_out.append(stats.LeftOut(variant, None, seed, f"no run of {reference} with seed {seed}"))
            continue
        a, b = series.align(partner, join="inner")
        tests.append((variant, seed, stats.mcnemar(a.to_numpy(), b.to_numpy(), alpha)))
    adjusted = stats.holm(np.array([t.pvalue for _, _, t in tests], dtype=float)) if tests else []
    verdicts, rows = [], []
    for (variant, seed, test), p_holm in zip(tests, adjusted, strict=True):
        test = replace(test, p_adjusted=float(p_holm))
        verdicts.append(stats.verdict(variant, reference, test, alpha, units=f"test images, seed {seed}"))
        ci = f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
        rows.append(
            [
                variant,
                reference,
                str(seed),
                str(test.n),
                f"{test.mean:+.2f}",
                ci,
                _p(test.pvalue),
                _p(p_holm),
                test.note,
            ]
        )
    return verdicts, rows


def study_statistics(runs: pd.DataFrame, reference: str | None = None, alpha: float = ALPHA) -> StudyStatistics:
    """The statistics of one study's ok runs: by folds when the runs have folds, else as a single split."""
    ok = runs[runs["status"] == "ok"]
    variants = sorted(ok["variant"].astype(str).unique())
    ref = reference_variant(variants, reference)
    if ref is None or len(variants) < 2:
        return StudyStatistics("none", ref)
    if ok["fold"].notna().any():
        return fold_statistics(ok, ref, alpha)
    return single_split_statistics(ok, ref, alpha)


def left_out_table(left_out: list[stats.LeftOut]) -> TableBlock:
    rows = [[x.variant, "–" if pd.isna(x.fold) else str(x.fold), str(x.seed), x.reason] for x in left_out]
    return TableBlock("runs left out of the paired tests", ["variant", "fold", "seed", "why"], rows)

"""The statistics of one study, as the report shows them: verdicts first, then the tables behind them.

* A k-fold study (runs with folds): every variant against the study's reference and every pair,
  paired by (fold, seed), with the corrected resampled t-test (which decides every verdict), Holm, and
  a Wilcoxon signed-rank p over the folds that is descriptive only
  (:func:`lanmsff.analysis.stats.paired_table`) for test accuracy, UAR, macro F1 and the accuracy per
  angle; with 3 or more variants Friedman's test over the folds and a critical-difference diagram,
  both descriptive (the folds share training data: :data:`lanmsff.analysis.stats.FOLD_BLOCKS_CAVEAT`).
* A single-split study (no folds: FER-2013, FERPlus): per run a bootstrap 95% CI of the test accuracy
  from its ``predictions.csv``, and McNemar's exact test between each variant and the reference on the
  same test images (runs paired by seed, images by file).

The reference (:func:`reference_model`): ``--reference`` where a variant of the study has that model,
else the reference the runs record (``reference`` in ``summary.json`` or its config), else ``lanmsff``,
else the first model by name. Variants named ``<model>@<group>`` (``kdef_cross_pose``:
``lanmsff@to_profile``) are compared within their group only, each against ``<reference model>@<group>``,
and Friedman runs within a group. A reference without usable runs (failed, unfinished, lacking the
metric) gets a line naming the comparisons it leaves undone; nothing else is put in its place.

Runs that cannot be paired are never paired: they are listed with the reason.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
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
GROUP_SEPARATOR = "@"
PREDICTIONS_FILE = "predictions.csv"
MATCH = "test_hash"  # runs are paired only when they were scored on the same test images
VERDICT_METRIC = "test/acc"


@dataclass
class TableBlock:
    """A titled table of formatted cells (the report renders it as markdown and as a sortable HTML table)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass(frozen=True)
class Mark:
    """A variant's difference to its reference on one metric (points) and whether it is significant."""

    difference: float
    significant: bool


@dataclass
class StudyStatistics:
    """What the report says about one study's differences.

    ``reference`` is the reference model; ``references`` the reference variant of each group (``""``: the
    variants without ``@<group>``). ``marks`` holds each compared variant's difference per metric.
    """

    kind: str  # "folds", "single split" or "none"
    reference: str | None
    references: dict[str, str] = field(default_factory=dict)
    verdicts: list[str] = field(default_factory=list)
    tables: list[TableBlock] = field(default_factory=list)
    friedman: dict[str, stats.FriedmanResult] = field(default_factory=dict)
    left_out: list[stats.LeftOut] = field(default_factory=list)
    marks: dict[tuple[str, str], Mark] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- the reference
def split_variant(variant: str) -> tuple[str, str]:
    """``("lanmsff", "to_profile")`` for ``lanmsff@to_profile``; ``(variant, "")`` for a name without ``@``."""
    model, separator, group = str(variant).rpartition(GROUP_SEPARATOR)
    return (model, group) if separator and model and group else (str(variant), "")


def join_variant(model: str, group: str) -> str:
    """The inverse of :func:`split_variant`."""
    return f"{model}{GROUP_SEPARATOR}{group}" if group else model


def variant_groups(variants: list[str]) -> dict[str, list[str]]:
    """The variants by group (``""`` first: the names without ``@<group>``), each list sorted."""
    groups: dict[str, list[str]] = {}
    for variant in sorted(map(str, variants), key=lambda v: (split_variant(v)[1], v)):
        groups.setdefault(split_variant(variant)[1], []).append(variant)
    return groups


def reference_model(runs: pd.DataFrame, requested: str | None = None) -> str | None:
    """The study's reference model: ``requested`` (its model part), the ``reference`` its runs record, or
    ``lanmsff``, whichever the study has a variant of first; else the first model of its successful runs
    (of any run when none succeeded) by name; ``None`` for no runs."""
    models = {split_variant(v)[0] for v in runs["variant"].astype(str)}
    recorded = runs["reference"].dropna().astype(str) if "reference" in runs else pd.Series(dtype=str)
    candidates = [requested, recorded.mode().iloc[0] if len(recorded) else None, DEFAULT_REFERENCE]
    for name in candidates:
        if name is not None and split_variant(name)[0] in models:
            return split_variant(name)[0]
    ok = runs[runs["status"] == "ok"] if "status" in runs else runs
    pool = ok if len(ok) else runs
    return min((split_variant(v)[0] for v in pool["variant"].astype(str)), default=None)


# ---------------------------------------------------------------------------------------------- formatting
def _p(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _points(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2f}"


def _paired_rows(table: pd.DataFrame, metric: str | None = None) -> list[list[str]]:
    rows = []
    for r in table.itertuples():
        ci = f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]" if math.isfinite(r.ci_low) else "–"
        diff = "–" if not math.isfinite(r.difference) else f"{r.difference:+.2f}"
        cells = [r.a, r.b, str(r.n), _points(r.mean_a), _points(r.mean_b), diff, ci, _p(r.p), _p(r.p_holm)]
        rows.append(([metric_label(metric)] if metric else []) + [*cells, _p(r.p_wilcoxon)])
    return rows


PAIRED_HEADERS = [
    *("A", "B", "pairs", "A %", "B %", "A − B (points)", "95% CI", "p", "p (Holm)"),
    "p (Wilcoxon over folds, descriptive)",
]


def metric_label(metric: str) -> str:
    """``test/acc`` -> ``test accuracy``, ``test/uar`` -> ``UAR``, ``test/acc_FL`` -> ``accuracy FL``."""
    labels = {"test/acc": "test accuracy", "test/f1_macro": "macro F1", "test/uar": "UAR"}
    return labels.get(metric) or f"accuracy {metric.removeprefix('test/acc_')}"


# ---------------------------------------------------------------------------------------------- labels of pairs
def _labels(runs: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per variant: its selections (a frozenset) and whether any of its runs shared identities."""
    out = {}
    for variant, group in runs.groupby(runs["variant"].astype(str)):
        selection = frozenset(group["selection"].dropna().astype(str)) if "selection" in group else frozenset()
        shared = "identities_shared" in group and group["identities_shared"].fillna(False).astype(bool).any()
        out[str(variant)] = {"selection": selection, "shared": bool(shared)}
    return out


def pair_caveats(a: str, b: str, labels: dict[str, dict[str, Any]]) -> str:
    """What a verdict of ``a`` vs ``b`` must say about their protocols ('' when nothing)."""
    la, lb = labels.get(a, {}), labels.get(b, {})
    notes = []
    if la.get("selection") and lb.get("selection") and la["selection"] != lb["selection"]:
        sel = {v: "+".join(sorted(labels[v]["selection"])) for v in (a, b)}
        notes.append(f"⚠ mixes protocols: selection {sel[a]} ({a}) vs {sel[b]} ({b}), not comparable as equals")
    shared = [v for v in (a, b) if labels.get(v, {}).get("shared")]
    if shared:
        notes.append(f"⚠ identities shared ({', '.join(shared)})")
    return "; ".join(notes)


def _with_caveats(verdict: str, a: str, b: str, labels: dict[str, dict[str, Any]]) -> str:
    caveat = pair_caveats(a, b, labels)
    return f"{verdict} [{caveat}]" if caveat else verdict


# ---------------------------------------------------------------------------------------------- k folds
def _reference_usable(runs: pd.DataFrame, reference: str, metric: str) -> bool:
    if metric not in runs:
        return False
    usable, _ = stats.usable_runs(runs, metric)
    return bool((usable["variant"] == reference).any())


def fold_statistics(
    runs: pd.DataFrame, reference: str, alpha: float = ALPHA, result: StudyStatistics | None = None
) -> StudyStatistics:
    """Paired tests over the folds of one group of a study (ok runs with folds), verdicts on test accuracy,
    added to ``result`` (a new one by default)."""
    result = result or StudyStatistics("folds", reference)
    metrics = ["test/acc", "test/uar", "test/f1_macro"] + [f"test/acc_{a}" for a in ordered_angles(runs)]
    metrics = [m for m in metrics if m in runs and runs[m].notna().any()]
    variants = sorted(runs["variant"].astype(str).unique())
    labels = _labels(runs)
    left: dict[tuple, stats.LeftOut] = {(x.variant, x.fold, x.seed, x.reason): x for x in result.left_out}
    rows: list[list[str]] = []
    for metric in metrics:
        if not _reference_usable(runs, reference, metric):
            continue  # the reference lacks this metric: nothing to compare it with (said in the paired table)
        table, unpaired = stats.paired_table(runs, metric, reference, alpha=alpha, match=MATCH)
        left.update({(x.variant, x.fold, x.seed, x.reason): x for x in unpaired})
        for r in table.itertuples():
            result.marks[(r.a, metric)] = Mark(r.difference, bool(r.p_holm < alpha and r.difference != 0))
        if metric == VERDICT_METRIC:
            result.verdicts += [_with_caveats(r.verdict, r.a, r.b, labels) for r in table.itertuples()]
        rows += _paired_rows(table, metric)
    _append_rows(result, "paired tests: each variant vs its reference", ["metric", *PAIRED_HEADERS], rows)
    if len(variants) > 2 and VERDICT_METRIC in metrics:
        table, _ = stats.paired_table(runs, VERDICT_METRIC, None, alpha=alpha, match=MATCH)
        _append_rows(result, "test accuracy: every pair", PAIRED_HEADERS, _paired_rows(table))
        _friedman(runs, alpha, result, split_variant(reference)[1])
    result.left_out = list(left.values())
    return result


def _append_rows(result: StudyStatistics, title: str, headers: list[str], rows: list[list[str]]) -> None:
    """Rows into the study's table of that title (one table for all groups of a study)."""
    table = next((t for t in result.tables if t.title == title), None)
    if table is None:
        result.tables.append(TableBlock(title, headers, list(rows)))
    else:
        table.rows += rows


def _friedman(runs: pd.DataFrame, alpha: float, result: StudyStatistics, group: str) -> None:
    scores, _ = stats.score_matrix(runs, VERDICT_METRIC, match=MATCH)
    try:
        friedman = stats.friedman_test(scores, alpha)
    except (ValueError, ImportError) as err:
        log.warning("no Friedman test for this study%s: %s", f" ({group})" if group else "", err)
        return
    result.friedman[group] = friedman
    ranks = ", ".join(f"{v} {r:.2f}" for v, r in friedman.mean_ranks.items())
    where = f" within {group}" if group else ""
    result.verdicts.append(
        f"Friedman over {friedman.n_blocks} folds/seeds{where}: χ² = {friedman.statistic:.2f}, "
        f"p = {_p(friedman.pvalue)}; mean ranks (1 = best): {ranks}; critical difference "
        f"{friedman.critical_difference:.2f} ({stats.FOLD_BLOCKS_CAVEAT})"
    )


# ---------------------------------------------------------------------------------------------- single split
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


def single_split_statistics(
    runs: pd.DataFrame, reference: str, alpha: float = ALPHA, result: StudyStatistics | None = None
) -> StudyStatistics:
    """Bootstrap CIs of each run's test accuracy and McNemar's test of each variant vs the reference."""
    result = result or StudyStatistics("single split", reference)
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
    title = "test accuracy with a bootstrap 95% CI (test images resampled, BCa)"
    _append_rows(result, title, ["variant", "seed", "accuracy %", "95% CI", "test images"], ci_rows)
    verdicts, rows = _mcnemar_rows(correct, reference, alpha, result, _labels(runs))
    result.verdicts += verdicts
    headers = ["A", "B", "seed", "images", "A − B (points)", "95% CI", "p", "p (Holm)", "discordant"]
    _append_rows(result, "McNemar's exact test: each variant vs its reference", headers, rows)
    return result


def _mcnemar_tests(
    correct: dict[tuple[str, Any], pd.Series], reference: str, result: StudyStatistics, alpha: float
) -> list[tuple[str, Any, stats.PairedTest]]:
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
    return [(v, s, replace(t, p_adjusted=float(p))) for (v, s, t), p in zip(tests, adjusted, strict=True)]


def _mcnemar_rows(
    correct: dict[tuple[str, Any], pd.Series],
    reference: str,
    alpha: float,
    result: StudyStatistics,
    labels: dict[str, dict[str, Any]],
) -> tuple[list[str], list[list[str]]]:
    verdicts, rows = [], []
    tests = _mcnemar_tests(correct, reference, result, alpha)
    for variant, seed, test in tests:
        line = stats.verdict(variant, reference, test, alpha, units=f"test images, seed {seed}")
        verdicts.append(_with_caveats(line, variant, reference, labels))
        ci = f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
        cells = [variant, reference, str(seed), str(test.n), f"{test.mean:+.2f}", ci, _p(test.pvalue)]
        rows.append([*cells, _p(test.p_adjusted), test.note])
    for variant in sorted({v for v, _, _ in tests}):
        mine = [t for v, _, t in tests if v == variant]
        signs = {np.sign(t.mean) for t in mine}
        significant = all(t.p_adjusted < alpha for t in mine) and len(signs) == 1 and 0 not in signs
        result.marks[(variant, VERDICT_METRIC)] = Mark(float(np.mean([t.mean for t in mine])), significant)
    return verdicts, rows


# ---------------------------------------------------------------------------------------------- one study
def _unusable_line(runs: pd.DataFrame, reference: str, others: list[str], group: str) -> str:
    """The line that says a group's reference has no usable runs, and which comparisons that leaves undone."""
    mine = runs[runs["variant"].astype(str) == reference]
    if VERDICT_METRIC not in mine:
        mine = mine.assign(**{VERDICT_METRIC: np.nan})
    _, left = stats.usable_runs(mine, VERDICT_METRIC) if len(mine) else (None, [])
    reasons = Counter(x.reason for x in left)
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())) or "no runs"
    comparisons = ", ".join(f"{v} vs {reference}" for v in others)
    where = f" (the reference of {group})" if group else " (the reference)"
    return f"{reference}{where} has no usable runs ({why}): no paired results for {comparisons}"


def study_statistics(runs: pd.DataFrame, reference: str | None = None, alpha: float = ALPHA) -> StudyStatistics:
    """The statistics of one study: by folds when its ok runs have folds, else as a single split; each group
    of ``<model>@<group>`` variants on its own, against ``<reference model>@<group>``."""
    ok = runs[runs["status"] == "ok"]
    model = reference_model(runs, reference)
    ok_variants = set(ok["variant"].astype(str))
    if model is None or (len(ok_variants) < 2 and not _reference_missing(runs, model)):
        return StudyStatistics("none", model)
    kind = "folds" if ok["fold"].notna().any() else "single split"
    result = StudyStatistics(kind, model)
    compare = fold_statistics if kind == "folds" else single_split_statistics
    for group, members in variant_groups(list(runs["variant"].astype(str).unique())).items():
        ref = join_variant(model, group)
        result.references[group] = ref
        others = [v for v in members if v != ref and v in ok_variants]
        if not others:
            continue
        group_runs = runs[runs["variant"].astype(str).isin(members)]
        if kind == "single split":  # runs are paired by seed, images by file: no fold needed
            group_runs = group_runs.assign(fold=group_runs["fold"].fillna(-1), seed=group_runs["seed"].fillna(-1))
        if not _reference_usable(group_runs, ref, VERDICT_METRIC):
            result.verdicts.append(_unusable_line(group_runs, ref, others, group))
            continue
        compare(ok[ok["variant"].astype(str).isin(members)], ref, alpha, result)
    if not result.marks and not result.verdicts:
        result.kind = "none"
    return result


def _reference_missing(runs: pd.DataFrame, model: str) -> bool:
    """Whether some variant has no successful reference beside it (to be said rather than skipped)."""
    ok_variants = set(runs.loc[runs["status"] == "ok", "variant"].astype(str))
    return any(join_variant(model, split_variant(v)[1]) not in ok_variants for v in ok_variants)


def left_out_table(left_out: list[stats.LeftOut]) -> TableBlock:
    """The runs left out of the paired tests, with the reason."""
    rows = [[x.variant, "–" if pd.isna(x.fold) else str(x.fold), str(x.seed), x.reason] for x in left_out]
    return TableBlock("runs left out of the paired tests", ["variant", "fold", "seed", "why"], rows)

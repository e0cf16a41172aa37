"""The comparison report of one or more studies: tables, statistics, figures, ``report.md`` and ``report.html``.

    runs = load_runs(["logs/kdef_ablation/multiruns"])   # lanmsff.analysis.loading: one row per run
    paths = write_report(runs, "logs/kdef_ablation/report")

Per study, in this order: the verdicts (is a variant better than the reference, or is it fold
noise: :mod:`lanmsff.analysis.comparisons`), the lines that qualify its numbers, one lead table
(:mod:`lanmsff.analysis.lead`: mean ± std over folds and seeds, the difference to the reference and its
significance in each cell), then folded away the paired tests, the full tables, the per-view confusion
matrices and the provenance, and the figures. The method is explained once, at the end.
Its command line is ``python -m lanmsff.analysis`` (:mod:`lanmsff.analysis.cli`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lanmsff.analysis import stats
from lanmsff.analysis.comparisons import TableBlock, left_out_table, study_statistics
from lanmsff.analysis.interactive import plotly_library
from lanmsff.analysis.lead import lead_table, study_lines
from lanmsff.analysis.loading import OBJECT_COLUMNS
from lanmsff.analysis.page import METHOD_TITLE, Fold, Section, render_html, render_markdown
from lanmsff.analysis.pooling import check_mixing, provenance_table, separate_protocol_versions
from lanmsff.analysis.study_figures import FigureItem, StudyFigures, slug
from lanmsff.analysis.subgroups import subgroup_tables
from lanmsff.analysis.tables import (
    calibration_table,
    display_table,
    failed_runs,
    mean_group_confusions,
    prefixed_table,
    summarise,
    variant_label,
    variant_marks,
)
from lanmsff.errors import UserError
from lanmsff.utils.io import atomic_write, atomic_write_text

METHOD = [
    "Each study leads with its verdicts, the lines that qualify its numbers, and one table: a row per variant, "
    "test accuracy, UAR (unweighted average recall: the mean of the per-class recalls), macro F1 and the accuracy "
    "per view in %, as mean ± sample standard deviation (ddof=1) over the variant's successful runs (its folds and "
    "seeds); in brackets the paired difference to the reference in points, * where it is significant. The tests "
    "behind it, the full tables (cost, best validation accuracy, calibration, recall per class), the per-view "
    "confusion matrices and where the runs came from fold open below it.",
    "Verdicts and * (k folds): each variant against its reference, runs paired by (fold, seed), i.e. on the same "
    "test people, so fold-to-fold difficulty cancels; runs without a partner, duplicates, failed runs and runs "
    "scored on other test images (test_hash) are never paired and are listed with the reason. p and the 95% CI "
    "come from Nadeau & Bengio's corrected resampled t-test (variance inflated by 1/k + n_test/n_train, k − 1 "
    "degrees of freedom: the folds' training sets overlap), Holm-adjusted over the variants compared on one "
    "metric. 'better' / 'worse' at α = 0.05, otherwise 'no detectable difference', which is not proof of "
    "equality: read the interval.",
    f"The paired tables also give a {stats.WILCOXON_LABEL}. With three or more variants, Friedman's test and the "
    "critical-difference diagram (Nemenyi post-hoc) rank the variants within each fold; Demšar (2006) meant "
    "independent data sets as blocks, and the folds of one data set share training data, so over folds both are "
    "anti-conservative: descriptive only, they never override the corrected t-test.",
    "One fixed test set (FER-2013, FERPlus: no folds): a bootstrap 95% CI (BCa) of each run's accuracy, and "
    "McNemar's exact test of each variant against the reference on the same test images (runs paired by seed), "
    "Holm-adjusted.",
    "Variants named MODEL@GROUP (kdef_cross_pose: MODEL@DIRECTION, e.g. lanmsff@to_profile) are compared within "
    "their group only, against REFERENCE@GROUP. The reference is --reference, else the reference the runs record, else "
    "lanmsff, else the first model by name; a reference without usable runs is said, not replaced.",
    "Marks: '⚠ identities shared' = an image-level protocol (stratified): the same people in training and test; "
    "'⚠ selection: test-fold' = data.protocol=paper: early stopping, learning-rate schedule and checkpoint choice "
    "(test_best/...) saw the test fold. Runs of different data protocol versions are never pooled or paired. "
    "GFLOPs and params per image; per-view columns only where the test sets hold that view.",
]
FOLDS = {
    "tests": "Paired tests: p, Holm-adjusted p, 95% CI, and the runs left out",
    "tables": "All metrics: accuracy with cost and best val accuracy, calibration, UAR per view, recall per class, "
    "subgroups",
    "confusion": "Per-view confusion matrices: mean over the runs, % of each true class",
    "provenance": "Where the runs came from",
}


def _failed_table(runs: pd.DataFrame) -> TableBlock:
    headers = ["study", "variant", "fold", "seed", "status", "error", "summary"]
    rows = [["" if pd.isna(v) else str(v) for v in row] for row in failed_runs(runs).itertuples(index=False)]
    return TableBlock("Failed runs", headers, rows)


def _intro(runs: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    ok = int((runs["status"] == "ok").sum())
    return [
        f"Runs: {len(runs)} ({ok} ok, {len(runs) - ok} failed or unfinished); studies: {summary['study'].nunique()}; "
        f"study x variant rows: {len(summary)}. Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC.",
        f"The statistical method is explained once, at the end ({METHOD_TITLE}).",
    ]


def _detail_tables(summary: pd.DataFrame, study: str) -> list[TableBlock]:
    """The full accuracy table, calibration, UAR per view and recall per class of one study."""
    tables = [TableBlock("accuracy: mean ± std over folds and seeds", *display_table(summary, study))]
    titled = [
        ("calibration on the test set (ECE: 15 bins)", calibration_table(summary, study)),
        ("UAR per view: mean ± std", prefixed_table(summary, study, "uar_")),
        ("recall per class: mean ± std", prefixed_table(summary, study, "recall_")),
    ]
    return tables + [TableBlock(title, headers, body) for title, (headers, body) in titled if body]


def _confusion_tables(runs: pd.DataFrame, summary: pd.DataFrame) -> list[TableBlock]:
    """Per variant: its mean row-normalised confusion matrix per view (rows: view and true class), in %."""
    labels = {str(r["variant"]): variant_label(r) for _, r in summary.iterrows()}
    tables = []
    for variant, group in runs.groupby(runs["variant"].astype(str), sort=True):
        found = mean_group_confusions(group)
        if not found:
            continue
        classes = next(iter(found.values()))[2]
        rows = [
            [f"{view} · {true}", *(f"{100 * v:.1f}" for v in mean[i])]
            for view, (mean, _, names) in found.items()
            if names == classes
            for i, true in enumerate(names)
        ]
        title = f"{labels.get(variant, variant)}: predicted class (columns) per view and true class (rows)"
        tables.append(TableBlock(title, ["view · true class", *classes], rows))
    return tables


def _mark_captions(figures: list[FigureItem], summary: pd.DataFrame) -> None:
    """Every figure of a study with marked variants says which variants carry which marks."""
    marked = [f"{r['variant']}: {', '.join(m)}" for _, r in summary.iterrows() if (m := variant_marks(r))]
    for item in figures if marked else []:
        item.caption = f"{item.caption} ({'; '.join(marked)})"


def study_section(
    study: str, runs: pd.DataFrame, summary: pd.DataFrame, folder: Path, *, reference: str | None, interactive: bool
) -> Section:
    """Verdicts, the lines that qualify them, the lead table, the folded details and the figures (written into
    ``folder``) of one study."""
    statistics = study_statistics(runs, reference)
    tests = statistics.tables + ([left_out_table(statistics.left_out)] if statistics.left_out else [])
    folds = [
        Fold(FOLDS["tests"], tests),
        Fold(FOLDS["tables"], _detail_tables(summary, study) + subgroup_tables(runs)),
        Fold(FOLDS["confusion"], _confusion_tables(runs, summary)),
        Fold(FOLDS["provenance"], [provenance_table(runs)]),
    ]
    figures = StudyFigures(runs, summary, folder, interactive_html=interactive).build(statistics.friedman)
    _mark_captions(figures, summary)
    lead = lead_table(summary, runs, statistics)
    return Section(study, statistics.verdicts, lead, figures, study_lines(summary, runs, statistics), folds)


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda f: frame.to_csv(f, index=False), binary=False)


def write_report(
    runs: pd.DataFrame,
    out_dir: str | Path,
    *,
    title: str = "lanmsff comparison",
    reference: str | None = None,
    interactive: bool = True,
    allow_mixed: bool = False,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``comparison.csv``, ``runs.csv`` and ``figures/<study>/*.png|pdf``
    into ``out_dir`` (every file atomically). Returns the paths keyed by their path relative to ``out_dir``.

    ``reference``: the variant every other one is tested against (default: ``lanmsff`` where a study has
    it, else its first variant by name). ``interactive=False`` gives an HTML page with static figures only.
    Runs of one variant from different code revisions or data are refused (:class:`UserError`) unless
    ``allow_mixed``, which pools them and says so at the top of the report.
    """
    if runs.empty:
        raise UserError("no runs to report")
    runs, kept_apart = separate_protocol_versions(runs)
    mixed = check_mixing(runs, allow_mixed=allow_mixed)
    out = Path(out_dir)
    summary = summarise(runs)
    sections = [
        study_section(
            str(study),
            runs[runs["study"] == study],
            summary[summary["study"] == study],
            out / "figures" / slug(str(study)),
            reference=reference,
            interactive=interactive,
        )
        for study in summary["study"].unique()
    ]
    failed, intro = _failed_table(runs), [*kept_apart, *_intro(runs, summary)]
    if mixed:
        intro = [f"Mixed runs pooled (--allow-mixed): {'; '.join(mixed)}.", *intro]
    paths = {}
    for item in (item for section in sections for item in section.figures):
        for path in (item.png, item.png.with_suffix(".pdf")):
            if path.exists():
                paths[path.relative_to(out).as_posix()] = path
    paths["comparison.csv"] = _write_csv(summary, out / "comparison.csv")
    paths["runs.csv"] = _write_csv(runs.drop(columns=OBJECT_COLUMNS), out / "runs.csv")
    markdown = render_markdown(title, intro, sections, failed, str(out), METHOD)
    paths["report.md"] = atomic_write_text(out / "report.md", markdown)
    library = plotly_library() if interactive else ""
    page = render_html(title, intro, sections, failed, library, METHOD)
    paths["report.html"] = atomic_write_text(out / "report.html", page)
    return paths

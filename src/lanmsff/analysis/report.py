"""The comparison report of one or more studies: tables, statistics, figures, ``report.md`` and ``report.html``.

    runs = load_runs(["logs/kdef_ablation/multiruns"])   # lanmsff.analysis.runs: one row per run
    paths = write_report(runs, "logs/kdef_ablation/report")

Per study, in this order: the verdicts (is a variant better than the reference, or is it fold
noise: :mod:`lanmsff.analysis.comparisons`), the accuracy table (mean ± std over folds and seeds),
calibration, the paired tests behind the verdicts, the runs left out of them, and the figures.
Its command line is ``python -m lanmsff.compare`` (:mod:`lanmsff.analysis.cli`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lanmsff.analysis.comparisons import TableBlock, left_out_table, study_statistics
from lanmsff.analysis.figures import StudyFigures, slug
from lanmsff.analysis.interactive import plotly_library
from lanmsff.analysis.page import Section, render_html, render_markdown
from lanmsff.analysis.provenance import check_mixing, provenance_table
from lanmsff.analysis.runs import OBJECT_COLUMNS
from lanmsff.analysis.tables import calibration_table, display_table, failed_runs, summarise
from lanmsff.errors import UserError
from lanmsff.utils.io import atomic_write, atomic_write_text

NOTE = (
    "Accuracies in % on the test split, mean ± sample standard deviation (ddof=1) over the successful "
    "runs of each variant (its folds and seeds); runs = successful runs, failed = the others. "
    "Per-angle columns only where the test sets hold that angle. GFLOPs and params per image."
)
KIND_NOTES = {
    "folds": "Verdicts: each variant against the reference, paired by (fold, seed) — the same test people — "
    "with the corrected resampled t-test, Holm-adjusted; 'better' / 'worse' at α = 0.05.",
    "single split": "One fixed test set: bootstrap CIs per run and McNemar's test on the same test images.",
    "none": "Fewer than two variants with successful runs: nothing to compare.",
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
        NOTE,
    ]


def study_section(
    study: str, runs: pd.DataFrame, summary: pd.DataFrame, folder: Path, *, reference: str | None, interactive: bool
) -> Section:
    """Verdicts, tables and figures (written into ``folder``) of one study."""
    statistics = study_statistics(runs, reference)
    headers, body = display_table(summary, study)
    tables = [TableBlock("accuracy: mean ± std over folds and seeds", headers, body)]
    cal_headers, cal_body = calibration_table(summary, study)
    if cal_body:
        tables.append(TableBlock("calibration on the test set (ECE: 15 bins)", cal_headers, cal_body))
    tables += statistics.tables
    if statistics.left_out:
        tables.append(left_out_table(statistics.left_out))
    tables.append(provenance_table(runs))
    figures = StudyFigures(runs, summary, folder, interactive_html=interactive).build(statistics.friedman)
    notes = [KIND_NOTES[statistics.kind]] + ([f"Reference: {statistics.reference}."] if statistics.reference else [])
    return Section(study, statistics.verdicts, tables, figures, notes)


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
    failed, intro = _failed_table(runs), _intro(runs, summary)
    if mixed:
        intro = [f"Mixed runs pooled (--allow-mixed): {'; '.join(mixed)}.", *intro]
    paths = {}
    for item in (item for section in sections for item in section.figures):
        for path in (item.png, item.png.with_suffix(".pdf")):
            if path.exists():
                paths[path.relative_to(out).as_posix()] = path
    paths["comparison.csv"] = _write_csv(summary, out / "comparison.csv")
    paths["runs.csv"] = _write_csv(runs.drop(columns=OBJECT_COLUMNS), out / "runs.csv")
    paths["report.md"] = atomic_write_text(out / "report.md", render_markdown(title, intro, sections, failed, str(out)))
    library = plotly_library() if interactive else ""
    paths["report.html"] = atomic_write_text(out / "report.html", render_html(title, intro, sections, failed, library))
    return paths

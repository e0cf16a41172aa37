"""Who the numbers hold for: accuracy and UAR per subgroup of the tested people, and the gaps between them.

Runs on data sets whose file names tell the people's gender (KDEF, RaFD) or age and ethnicity (RaFD) record
``test/subgroup/<attribute>/<value>/{acc,uar,images}`` (:func:`lanmsff.tasks.common.record_subgroups`). Per
study and variant, :func:`subgroup_table` gives each subgroup's mean ± std over the runs with its images, and
:func:`gap_table` tests each pair of values of an attribute (e.g. female - male accuracy) with the corrected
resampled t-test over the runs (folds x seeds: the same run's two subgroups are paired), Holm-adjusted
within the attribute. With one run there is no test, and the table says so.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lanmsff.analysis import stats
from lanmsff.analysis.comparisons import TableBlock

_COLUMN = re.compile(r"^test/subgroup/(?P<attribute>[^/]+)/(?P<value>[^/]+)/(?P<metric>acc|uar|images)$")


def subgroup_columns(runs: pd.DataFrame) -> dict[tuple[str, str], dict[str, str]]:
    """``{(attribute, value): {metric: column}}`` of the subgroup metrics some run recorded, in column order."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for column in runs.columns:
        if (match := _COLUMN.match(str(column))) and pd.to_numeric(runs[column], errors="coerce").notna().any():
            found.setdefault((match["attribute"], match["value"]), {})[match["metric"]] = str(column)
    return dict(sorted(found.items()))


def _values(group: pd.DataFrame, column: str | None) -> pd.Series:
    if column is None:
        return pd.Series(dtype=float)
    return pd.to_numeric(group[column], errors="coerce")


def _pct(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "–"
    std = values.std(ddof=1) if len(values) > 1 else math.nan
    return f"{100 * values.mean():.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def subgroup_table(runs: pd.DataFrame) -> TableBlock | None:
    """Per variant and subgroup: accuracy and UAR (mean ± std over runs, %), images per run and in all runs."""
    columns = subgroup_columns(runs)
    if not columns:
        return None
    rows = []
    for variant, group in runs.groupby(runs["variant"].astype(str), sort=True):
        for (attribute, value), metrics in columns.items():
            images = _values(group, metrics.get("images")).dropna()
            if images.empty:
                continue
            rows.append(
                [
                    variant,
                    attribute,
                    value,
                    _pct(_values(group, metrics.get("acc"))),
                    _pct(_values(group, metrics.get("uar"))),
                    f"{images.mean():,.0f}",
                    f"{images.sum():,.0f}",
                    str(len(images)),
                ]
            )
    headers = ["variant", "attribute", "subgroup", "accuracy %", "UAR %", "images per run", "images", "runs"]
    note = "Subgroups of the tested people, from the data set's file names; read the image counts before a gap."
    return TableBlock("accuracy and UAR per subgroup: mean ± std over runs", headers, rows, note)


def _gap_rows(group: pd.DataFrame, attribute: str, values: Sequence[str], alpha: float) -> list[list[str]]:
    """One row per pair of values of ``attribute``: the accuracy gap, its corrected test, Holm within the pair set."""
    n_train = float(pd.to_numeric(group.get("n_train"), errors="coerce").mean()) if "n_train" in group else math.nan
    n_test = float(pd.to_numeric(group.get("n_test"), errors="coerce").mean()) if "n_test" in group else math.nan
    tests = []
    for a, b in itertools.combinations(values, 2):
        a_acc = pd.to_numeric(group[f"test/subgroup/{attribute}/{a}/acc"], errors="coerce")
        b_acc = pd.to_numeric(group[f"test/subgroup/{attribute}/{b}/acc"], errors="coerce")
        diffs = (100 * (a_acc - b_acc)).dropna().to_numpy(float)
        tests.append((a, b, stats.corrected_resampled_ttest(diffs, n_train, n_test, alpha)))
    adjusted = stats.holm([t.pvalue for _, _, t in tests])
    rows = []
    for (a, b, test), p_adjusted in zip(tests, adjusted, strict=True):
        ci = "–" if math.isnan(test.ci_low) else f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
        p = "no test" if math.isnan(test.pvalue) else f"{test.pvalue:.3g}"
        p_holm = "–" if np.isnan(p_adjusted) else f"{p_adjusted:.3g}"
        rows.append([attribute, f"{a} - {b}", f"{test.mean:+.2f}", ci, p, p_holm, str(test.n), test.note or ""])
    return rows


def gap_table(runs: pd.DataFrame, alpha: float = 0.05) -> TableBlock | None:
    """Per variant: the accuracy gap between each pair of subgroups of an attribute, with its corrected test."""
    columns = subgroup_columns(runs)
    attributes: dict[str, list[str]] = {}
    for attribute, value in columns:
        if "acc" in columns[(attribute, value)]:
            attributes.setdefault(attribute, []).append(value)
    if not any(len(values) > 1 for values in attributes.values()):
        return None
    rows = []
    for variant, group in runs.groupby(runs["variant"].astype(str), sort=True):
        for attribute, values in attributes.items():
            rows += [[variant, *row] for row in _gap_rows(group, attribute, values, alpha) if len(values) > 1]
    headers = ["variant", "attribute", "gap", "mean (points)", "95% CI", "p", "Holm p", "runs", "note"]
    note = (
        "Accuracy of one subgroup minus another's, paired within each run; corrected resampled t-test over "
        "the runs (Nadeau & Bengio), Holm-adjusted within the attribute. One run: no test."
    )
    return TableBlock("subgroup gaps: corrected paired test over runs", headers, rows, note)


def subgroup_tables(runs: pd.DataFrame) -> list[TableBlock]:
    """The report's subgroup tables of one study (none when its runs recorded no subgroups)."""
    return [table for table in (subgroup_table(runs), gap_table(runs)) if table is not None]

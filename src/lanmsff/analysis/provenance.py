"""What the runs of a comparison came from, and the rule that keeps apart what should not be pooled.

Runs of one variant are pooled into one mean ± std and paired in the tests only when they came from
the same code revision and the same data (the fingerprint of the dataset as used). Otherwise the
report is refused with a message naming the study, the variant and what differs, unless
``allow_mixed`` is given: then the report says so in its first lines. Runs that do not record a
revision or a fingerprint (written before schema 3) are not held against the others.
"""

from __future__ import annotations

import pandas as pd

from lanmsff.analysis.comparisons import TableBlock
from lanmsff.errors import UserError

POOL_KEYS = {"code_revision": "code revisions", "data_fingerprint": "data fingerprints"}


def mixed_groups(runs: pd.DataFrame) -> list[str]:
    """One line per (study, variant) whose ok runs come from more than one code revision or dataset."""
    problems = []
    ok = runs[runs["status"] == "ok"]
    for (study, variant), group in ok.groupby(["study", "variant"], sort=True):
        for column, what in POOL_KEYS.items():
            values = sorted(str(v) for v in group[column].dropna().unique())
            if len(values) > 1:
                problems.append(f"{study} / {variant}: {len(values)} {what} ({', '.join(v[:16] for v in values)})")
    return problems


def check_mixing(runs: pd.DataFrame, *, allow_mixed: bool = False) -> list[str]:
    """The mixed groups; raises :class:`UserError` when there are any and ``allow_mixed`` is false."""
    problems = mixed_groups(runs)
    if problems and not allow_mixed:
        raise UserError(
            "refusing to pool runs of one variant that come from different code or data: "
            + "; ".join(problems)
            + ". Compare them in separate reports, or pass --allow-mixed to pool them anyway (the report says so)"
        )
    return problems


def provenance_table(runs: pd.DataFrame) -> TableBlock:
    """Per code revision, data fingerprint and environment: how many runs of which variants (dirty trees marked)."""
    keys = ["code_revision", "dirty", "data_fingerprint", "environment"]
    frame = runs[[*keys, "variant"]].copy()
    for key in keys:
        frame[key] = frame[key].map(lambda v: "–" if v is None or pd.isna(v) else str(v))
    rows = []
    for values, group in frame.groupby(keys, sort=True):
        revision, dirty, fingerprint, environment = values
        mark = "yes: uncommitted changes" if dirty == "True" else ("no" if dirty == "False" else "–")
        variants = ", ".join(sorted(group["variant"].astype(str).unique()))
        rows.append([revision, mark, fingerprint[:16], environment, str(len(group)), variants])
    headers = ["code revision", "dirty tree", "data fingerprint", "environment", "runs", "variants"]
    return TableBlock("where the runs came from", headers, rows)

"""What the runs of a comparison came from, and the rule that keeps apart what should not be pooled.

Runs of one variant are pooled into one mean ± std and paired in the tests only when they came from
the same code revision and the same data (the fingerprint of the dataset as used). Otherwise the
report is refused with a message naming the study, the variant and what differs, unless
``allow_mixed`` is given: then the report says so in its first lines. Runs that do not record a
revision or a fingerprint (written before schema 3) are not held against the others.

Runs of different data protocol versions (``data.protocol_version``, 1 when a run split by a KDEF
protocol lacks it, none for data sets without fold protocols such as FER-2013: version 2 changed
the file list and the fold assignment) are never pooled nor paired, not even with ``allow_mixed``: a
study whose runs have several versions is split into one study per version
(:func:`separate_protocol_versions`), and the report says which runs were kept apart and why.
"""

from __future__ import annotations

import pandas as pd

from lanmsff.analysis.comparisons import TableBlock
from lanmsff.errors import UserError

POOL_KEYS = {"code_revision": "code revisions", "data_fingerprint": "data fingerprints"}
VERSION_WHY = "the file list and the fold assignment changed with protocol version 2"


def version_study(study: str, version: int) -> str:
    """The name under which a study's runs of one protocol version are reported when versions are mixed."""
    return f"{study} (protocol v{version})"


def separate_protocol_versions(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs with every study of several ``protocol_version`` values split into one study per version.

    Returns the runs (``study`` renamed by :func:`version_study` where split) and one line per split study
    saying which runs were kept apart and why. Runs of one version are never pooled with another's.
    """
    if "protocol_version" not in runs:
        return runs, []
    versions = runs["protocol_version"].dropna().astype(int)  # data sets without fold protocols have none
    out, lines = runs.copy(), []
    for study, group in versions.groupby(runs["study"], sort=True):
        counts = group.value_counts().sort_index()
        if len(counts) < 2:
            continue
        out.loc[group.index, "study"] = [version_study(str(study), v) for v in group]
        parts = ", ".join(f"{n} run(s) of version {v} as '{version_study(str(study), v)}'" for v, n in counts.items())
        lines.append(
            f"{study}: runs of data protocol versions {', '.join(map(str, counts.index))} kept apart, never pooled "
            f"or paired ({VERSION_WHY}): {parts}."
        )
    return out, lines


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
    """Per code revision, data fingerprint, environment and protocol (with its version): how many runs of which
    variants (dirty trees marked)."""
    keys = ["code_revision", "dirty", "data_fingerprint", "environment", "protocol"]
    frame = runs[[*keys[:-1], "variant"]].copy()
    protocols = runs["protocol"] if "protocol" in runs else [None] * len(runs)
    versions = runs["protocol_version"] if "protocol_version" in runs else [None] * len(runs)
    frame["protocol"] = [f"{p} v{v}" if isinstance(p, str) else None for p, v in zip(protocols, versions)]
    for key in keys:
        frame[key] = frame[key].map(lambda v: "–" if v is None or pd.isna(v) else str(v))
    rows = []
    for values, group in frame.groupby(keys, sort=True):
        revision, dirty, fingerprint, environment, protocol = values
        mark = "yes: uncommitted changes" if dirty == "True" else ("no" if dirty == "False" else "–")
        variants = ", ".join(sorted(group["variant"].astype(str).unique()))
        rows.append([revision, mark, fingerprint[:16], environment, protocol, str(len(group)), variants])
    headers = ["code revision", "dirty tree", "data fingerprint", "environment", "protocol", "runs", "variants"]
    return TableBlock("where the runs came from", headers, rows)

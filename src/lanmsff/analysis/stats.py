"""Is variant A really better than variant B, or is it fold noise? Significance tests for the comparison report.

    test = corrected_resampled_ttest(acc_a - acc_b, n_train=4410, n_test=490)   # k-fold CV, in points
    verdict("lanmsff", "lanmsff_attn_none", test)
    # 'lanmsff vs lanmsff_attn_none: +1.7 points [1.1, 2.3], p < 0.001 (corrected t-test, 10 folds): better'
    table, left_out = paired_table(runs, "test/acc")       # every pair of variants, Holm-corrected
    result = friedman_test(score_matrix(runs, "test/acc")[0])  # 3+ variants: Friedman + Nemenyi
    fig = critical_difference_figure(result)

Cross-validation (several folds): the Nadeau & Bengio (2003) corrected resampled t-test on the paired
differences per fold (and seed), which decides every verdict; Holm's step-down correction over the
comparisons of a table; a Wilcoxon signed-rank p-value over the folds, descriptive only (it ignores the
folds' shared training data); and for 3+ variants Friedman's test with the Nemenyi post-hoc and a
critical-difference diagram (Demšar 2006). Demšar's blocks are data sets; over the folds of one data set,
which share training data, Friedman and Nemenyi are anti-conservative (:data:`FOLD_BLOCKS_CAVEAT`, printed on
the diagram), so they describe the ranks and never override the corrected t-test. Single split (one fixed
test set, e.g. FER-2013): a bootstrap CI of the accuracy and McNemar's exact test on the same test images.

Every accuracy and difference here is in percentage points (the run frames of
:mod:`lanmsff.analysis.report` hold fractions: :func:`paired_table` multiplies by ``scale=100``).
The Nemenyi post-hoc and the diagram need ``scikit-posthocs`` (imported when used); the rest needs
numpy, pandas and scipy only. Pure functions: no I/O (the figure is returned, not written).
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAIR_KEYS = ("fold", "seed")
ZERO_VARIANCE_RTOL = 1e-9  # a sample variance below (1e-9 * max(1, |mean|))^2 is rounding noise: all diffs equal
WILCOXON_LABEL = "Wilcoxon signed-rank over folds (ignores the folds' shared training data; descriptive only)"
FOLD_BLOCKS_CAVEAT = (
    "blocks are folds that share training data, not independent data sets: "
    "anti-conservative, descriptive only; verdicts come from the corrected t-test"
)
POSTHOC_INSTALL = "the Nemenyi post-hoc and the CD diagram need scikit-posthocs: pip install 'scikit-posthocs>=0.12'"


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of A and B: ``mean`` = mean of (A - B) in points, its CI, the test's p-value.

    ``p_adjusted`` is the Holm-adjusted p-value when the test is one of a table's (:func:`paired_table`);
    :func:`verdict` uses it when set. ``ci_low``/``ci_high`` are NaN where the test gives no interval.
    """

    test: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    statistic: float
    pvalue: float
    dof: float = math.nan
    note: str = ""
    p_adjusted: float | None = None


@dataclass(frozen=True)
class AccuracyCI:
    """Accuracy (points) of ``n`` test images with its confidence interval."""

    accuracy: float
    low: float
    high: float
    n: int
    confidence: float
    method: str


@dataclass(frozen=True)
class LeftOut:
    """A run that was not paired (or not ranked), and why."""

    variant: str
    fold: Any
    seed: Any
    reason: str


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman's test over blocks (fold x seed) of 3+ variants, with the Nemenyi post-hoc.

    ``mean_ranks``: rank 1 = best (highest score), ties averaged, sorted best first. ``nemenyi``:
    symmetric matrix of pairwise p-values (1 on the diagonal). ``critical_difference``: Demšar's CD at
    ``alpha``; two variants differ by Nemenyi exactly when their mean ranks differ by more than it.
    """

    statistic: float
    pvalue: float
    n_blocks: int
    mean_ranks: pd.Series
    nemenyi: pd.DataFrame
    critical_difference: float
    alpha: float
    note: str = ""


# ---------------------------------------------------------------------------------------------- cross-validation
def _no_test(name: str, diffs: np.ndarray, note: str) -> PairedTest:
    mean = float(diffs.mean()) if diffs.size else math.nan
    return PairedTest(name, int(diffs.size), mean, math.nan, math.nan, math.nan, math.nan, note=note)


def _is_zero_variance(variance: float, mean: float) -> bool:
    return variance <= (ZERO_VARIANCE_RTOL * max(1.0, abs(mean))) ** 2


def _zero_variance_test(name: str, k: int, mean: float) -> PairedTest:
    equal = f"all {k} differences are equal (zero variance)"
    if mean == 0:
        return PairedTest(name, k, 0.0, 0.0, 0.0, 0.0, 1.0, k - 1, note=f"{equal} and zero: p = 1")
    return PairedTest(name, k, mean, mean, mean, math.copysign(math.inf, mean), 0.0, k - 1, note=f"{equal}: p = 0")


def corrected_resampled_ttest(
    diffs: Sequence[float] | np.ndarray, n_train: float, n_test: float, alpha: float = 0.05
) -> PairedTest:
    """Nadeau & Bengio (2003) corrected resampled t-test of paired differences (A - B) from cross-validation.

    The folds' training sets overlap, so their results are correlated and the plain paired t-test
    (variance / k) is far too liberal; the correction inflates the variance to
    ``var * (1/k + n_test/n_train)`` and uses a t distribution with k - 1 degrees of freedom. ``diffs``
    may hold k folds x r seeds (Bouckaert & Frank 2004's corrected repeated k-fold test: k := k*r).
    Returns the mean difference, its (1 - alpha) CI with the same corrected variance, t and the two-sided
    p-value. All differences equal (zero variance): p = 0, or p = 1 if they are all zero (as Weka does);
    fewer than 2 differences or unknown sizes: no test (NaN p), said in ``note``.
    """
    name = "corrected t-test"
    d = np.asarray(diffs, dtype=float).ravel()
    d = d[np.isfinite(d)]
    k = d.size
    if k < 2:
        return _no_test(name, d, f"{k} paired difference(s): no test")
    if not (np.isfinite(n_train) and np.isfinite(n_test) and n_train > 0 and n_test > 0):
        return _no_test(name, d, "n_train/n_test unknown: no corrected test")
    mean, variance = float(d.mean()), float(d.var(ddof=1))
    if _is_zero_variance(variance, mean):
        return _zero_variance_test(name, k, mean)
    se = math.sqrt(variance * (1.0 / k + n_test / n_train))
    t = mean / se
    half = float(stats.t.ppf(1.0 - alpha / 2.0, k - 1)) * se
    p = float(2.0 * stats.t.sf(abs(t), k - 1))
    return PairedTest(name, k, mean, mean - half, mean + half, t, p, k - 1)


def wilcoxon_pvalue(diffs: Sequence[float] | np.ndarray) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test of paired differences (scipy.stats.wilcoxon).

    Zero differences are dropped (``zero_method="wilcox"``); all zero: 1.0; fewer than 2 non-NaN
    differences: NaN. scipy uses the exact null distribution for small samples without ties or zeros
    (n <= 50), the normal approximation otherwise. Over cross-validation folds it ignores their shared
    training data (the correlation the corrected t-test accounts for), so it is too liberal there and only
    descriptive (:data:`WILCOXON_LABEL`); with 10 folds its smallest possible p is 2/1024 = 0.002.
    """
    d = np.asarray(diffs, dtype=float).ravel()
    d = d[np.isfinite(d)]
    if d.size < 2:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input's order; NaN entries stay NaN and do not count.

    The i-th smallest of m p-values becomes max over j <= i of (m - j + 1) * p_(j), capped at 1: rejecting
    where the adjusted p < alpha controls the family-wise error rate at alpha, uniformly more powerful
    than Bonferroni.
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    scaled = (m - np.arange(m)) * p[order]
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


# ---------------------------------------------------------------------------------------------- single split
def _exact_binomial_ci(hits: int, n: int, confidence: float) -> AccuracyCI:
    ci = stats.binomtest(hits, n).proportion_ci(confidence_level=confidence, method="exact")
    return AccuracyCI(100.0 * hits / n, 100.0 * ci.low, 100.0 * ci.high, n, confidence, "exact binomial")


def bootstrap_accuracy_ci(
    correct: Sequence[bool] | np.ndarray, n_resamples: int = 9999, confidence: float = 0.95, seed: int = 0
) -> AccuracyCI:
    """Accuracy (points) of one test set with a bootstrap CI over its images (scipy.stats.bootstrap, BCa).

    BCa (bias-corrected and accelerated) rather than percentile: it is second-order accurate and
    corrects for the skew of the accuracy's sampling distribution, which matters near 100 % (KDEF,
    FER+); for a mean of thousands of 0/1 values both give nearly the same interval. When every image
    is right (or every one wrong) the bootstrap distribution is a single point and BCa undefined: the
    exact (Clopper-Pearson) binomial interval is returned instead, ``method`` says which.
    """
    x = np.asarray(correct, dtype=bool).ravel().astype(float)
    n, hits = x.size, int(x.sum())
    if n == 0:
        raise ValueError("no test images")
    if hits in (0, n):
        return _exact_binomial_ci(hits, n, confidence)
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="BCa",
        rng=np.random.default_rng(seed),
        batch=max(1, min(n_resamples, 2_000_000 // n)),  # at most ~16 MB of resamples at once
    )
    low, high = res.confidence_interval
    return AccuracyCI(100.0 * hits / n, 100.0 * float(low), 100.0 * float(high), n, confidence, "bootstrap BCa")


def mcnemar(
    correct_a: Sequence[bool] | np.ndarray, correct_b: Sequence[bool] | np.ndarray, alpha: float = 0.05
) -> PairedTest:
    """McNemar's test of two variants' predictions on the same test images (exact binomial version).

    Only the discordant images count: ``b`` = A right and B wrong, ``c`` = A wrong and B right; under
    H0 b ~ Binomial(b + c, 1/2). Always exact (scipy.stats.binomtest, two-sided): it is valid for any
    count, costs nothing even for b + c in the thousands, and for large counts agrees with the
    chi-square version, which is an approximation for hand computation (and needs b + c >= 25 or so).
    ``mean`` is the accuracy difference A - B in points with a Wald CI for paired proportions
    (Agresti 2002): sqrt(b + c - (b - c)^2 / n) / n.
    """
    a = np.asarray(correct_a, dtype=bool).ravel()
    b_ = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b_.shape or a.size == 0:
        raise ValueError(f"need two equally long, non-empty prediction vectors (got {a.size} and {b_.size})")
    n, b, c = a.size, int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    diff = 100.0 * (b - c) / n
    note = f"{b} images only A got right, {c} only B"
    if b + c == 0:
        return PairedTest("McNemar exact", n, 0.0, 0.0, 0.0, 0.0, 1.0, note=note + ": p = 1")
    p = float(stats.binomtest(b, b + c, 0.5).pvalue)
    half = float(stats.norm.ppf(1 - alpha / 2)) * 100.0 * math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    low, high = max(diff - half, -100.0), min(diff + half, 100.0)
    return PairedTest("McNemar exact", n, diff, low, high, float(b), p, note=note)


# ---------------------------------------------------------------------------------------------- verdict
def _format_p(p: float, alpha: float) -> str:
    if p == 0:
        return "p = 0"
    if p < 0.001:
        return "p < 0.001"
    text = f"{p:.2g}"
    if (float(text) < alpha) != (p < alpha):  # never let rounding cross the threshold
        text = f"{p:.4f}"
    return f"p = {text}"


def verdict(a_name: str, b_name: str, result: PairedTest, alpha: float = 0.05, *, units: str = "folds") -> str:
    """One plain-language line: difference A - B in points with its CI, p, the test and better/worse/no difference.

    The Holm-adjusted p (``result.p_adjusted``) decides where it is given; the CI shown is the
    unadjusted one. ``units`` names what ``result.n`` counts (folds, "fold x seed pairs", images).
    E.g. ``"lanmsff vs lanmsff_attn_none: +2.9 points [0.4, 5.4], p = 0.03 (corrected t-test, 10 folds): better"``.
    """
    head = f"{a_name} vs {b_name}: "
    if math.isnan(result.mean):
        return head + f"no paired results ({result.note or 'nothing to compare'})"
    ci = f" [{result.ci_low:.1f}, {result.ci_high:.1f}]" if np.isfinite([result.ci_low, result.ci_high]).all() else ""
    effect = f"{result.mean:+.1f} points{ci}"
    adjusted = result.p_adjusted is not None and not math.isnan(result.p_adjusted)
    p = result.p_adjusted if adjusted else result.pvalue
    if p is None or math.isnan(p):
        return head + f"{effect} ({result.test}, {result.n} {units}): not tested ({result.note})"
    context = f"{result.test}, {result.n} {units}" + (", Holm-adjusted" if adjusted else "")
    word = "no detectable difference" if p >= alpha or result.mean == 0 else "better" if result.mean > 0 else "worse"
    return head + f"{effect}, {_format_p(p, alpha)} ({context}): {word}"


# ---------------------------------------------------------------------------------------------- pairing runs
def _left_out(rows: pd.DataFrame, reason: str) -> list[LeftOut]:
    return [LeftOut(str(v), f, s, reason) for v, f, s in zip(rows["variant"], rows["fold"], rows["seed"])]


def _keys(rows: pd.DataFrame) -> list[tuple[Any, Any]]:
    return list(zip(*(rows[key] for key in PAIR_KEYS)))


def usable_runs(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[LeftOut]]:
    """The runs of one study that can be paired on ``metric``; the others (not ok, no metric, no fold/seed,
    duplicate (variant, fold, seed)) with the reason. Raises ``ValueError`` for runs of several studies."""
    return _usable_runs(runs, metric)


def _usable_runs(runs: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, list[LeftOut]]:
    """The runs that can be paired; the others (not ok, no metric, no fold/seed, duplicates) with reasons."""
    missing = {"variant", *PAIR_KEYS, metric} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lack the column(s) {sorted(missing)}")
    if "study" in runs and runs["study"].nunique(dropna=False) > 1:
        raise ValueError("runs of several studies: compare one study at a time")
    frame = runs.assign(variant=runs["variant"].astype(str))
    frame[metric] = pd.to_numeric(frame[metric], errors="coerce")
    left: list[LeftOut] = []
    checks = [
        (lambda f: f["status"] != "ok" if "status" in f else pd.Series(False, index=f.index), "run not successful"),
        (lambda f: f[metric].isna(), f"{metric} missing"),
        (lambda f: f[list(PAIR_KEYS)].isna().any(axis=1), "fold or seed missing"),
        (lambda f: f.duplicated(["variant", *PAIR_KEYS], keep=False), "duplicate (variant, fold, seed)"),
    ]
    for check, reason in checks:
        mask = check(frame)
        if mask.any():
            left += _left_out(frame[mask], reason)
            frame = frame[~mask]
    return frame, left


def _pair(
    rows_a: pd.DataFrame, rows_b: pd.DataFrame, a: str, b: str, match: str | None = None
) -> tuple[pd.DataFrame, list[LeftOut]]:
    """Runs of A and B with the same (fold, seed), inner-joined; the runs without a partner, with reasons.

    With ``match`` (a column, e.g. ``test_hash``: which test images a run was scored on), runs whose
    values differ are not paired either (a missing value matches anything).
    """
    merged = rows_a.merge(rows_b, on=list(PAIR_KEYS), suffixes=("_a", "_b"), sort=True)
    left = []
    mismatched: set[tuple[Any, Any]] = set()
    if match and f"{match}_a" in merged:
        x, y = merged[f"{match}_a"], merged[f"{match}_b"]
        differ = (x.notna() & y.notna() & (x != y)).to_numpy(dtype=bool)
        mismatched = set(_keys(merged[differ]))
        for rows, other in ((rows_a, b), (rows_b, a)):
            mask = np.array([key in mismatched for key in _keys(rows)], dtype=bool)
            if mask.any():
                left += _left_out(rows[mask], f"same fold and seed as {other} but other test images ({match} differs)")
        merged = merged[~differ]
    paired = set(_keys(merged)) | mismatched  # a mismatched run has a partner, just not a comparable one
    for rows, other in ((rows_a, b), (rows_b, a)):
        alone = np.array([key not in paired for key in _keys(rows)], dtype=bool)
        if alone.any():
            left += _left_out(rows[alone], f"no partner with the same fold and seed in {other}")
    return merged, left


def _sizes(pairs: pd.DataFrame) -> tuple[float, float]:
    """Mean training and test set sizes of the paired runs (NaN where unknown)."""
    values = []
    for column in ("n_train", "n_test"):
        cols = [f"{column}_a", f"{column}_b"]
        sizes = pairs[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float) if cols[0] in pairs else []
        values.append(float(np.mean(sizes)) if np.size(sizes) and np.isfinite(sizes).all() else math.nan)
    return values[0], values[1]


def _units(pairs: pd.DataFrame) -> str:
    seeds = pairs["seed"].nunique()
    return "folds" if seeds <= 1 else f"fold x seed pairs ({pairs['fold'].nunique()} folds x {seeds} seeds)"


def _compare(pairs: pd.DataFrame, metric: str, scale: float, alpha: float) -> dict[str, Any]:
    diffs = scale * (pairs[f"{metric}_a"] - pairs[f"{metric}_b"]).to_numpy(dtype=float)
    n_train, n_test = _sizes(pairs)
    test = corrected_resampled_ttest(diffs, n_train, n_test, alpha)
    return {
        "n": test.n,
        "folds": int(pairs["fold"].nunique()),
        "seeds": int(pairs["seed"].nunique()),
        "mean_a": scale * float(pairs[f"{metric}_a"].mean()) if len(pairs) else math.nan,
        "mean_b": scale * float(pairs[f"{metric}_b"].mean()) if len(pairs) else math.nan,
        "difference": test.mean,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "t": test.statistic,
        "p": test.pvalue,
        "p_wilcoxon": wilcoxon_pvalue(diffs),
        "note": test.note,
        "test": test,
        "units": _units(pairs),
    }


TABLE_COLUMNS = [
    *("a", "b", "n", "folds", "seeds", "mean_a", "mean_b", "difference", "ci_low", "ci_high", "t", "p", "p_holm"),
    *("p_wilcoxon", "note", "verdict"),
]


def _comparisons(variants: list[str], reference: str | None) -> list[tuple[str, str]]:
    if reference is None:
        return list(itertools.combinations(variants, 2))
    if reference not in variants:
        raise ValueError(f"reference {reference!r} has no usable runs (variants: {variants})")
    return [(v, reference) for v in variants if v != reference]


def paired_table(
    runs: pd.DataFrame,
    metric: str,
    reference: str | None = None,
    *,
    scale: float = 100.0,
    alpha: float = 0.05,
    match: str | None = None,
) -> tuple[pd.DataFrame, list[LeftOut]]:
    """Paired comparisons of the variants of one study over its folds (and seeds), Holm-corrected.

    ``runs``: one row per run with ``variant, fold, seed, <metric>, n_train, n_test`` (``status`` and
    ``study`` are honoured when present). Runs of two variants are paired by (fold, seed) only: a run
    without a partner, a duplicate (variant, fold, seed), a failed run or one without the metric is
    never paired and lands in the returned list with the reason (once per comparison it misses).
    Compares every pair of variants (sorted by name; ``a`` vs ``b``), or each variant vs ``reference``
    (``a`` = variant, ``b`` = reference). Per row: pairs, folds, seeds, the means of a and b over the
    pairs and their mean difference a - b in points (``scale`` * metric) with the corrected t-test's CI,
    t and p, ``p_holm`` (Holm over the table's tests), the Wilcoxon p (descriptive only) and the
    :func:`verdict` (from the corrected t-test).
    ``match``: a column that paired runs must agree on (e.g. ``test_hash``; see :func:`_pair`).
    """
    usable, left = _usable_runs(runs, metric)
    variants = sorted(usable["variant"].unique())
    by_variant = {v: usable[usable["variant"] == v] for v in variants}
    rows = []
    for a, b in _comparisons(variants, reference):
        pairs, unpaired = _pair(by_variant[a], by_variant[b], a, b, match)
        left += unpaired
        rows.append({"a": a, "b": b, **_compare(pairs, metric, scale, alpha)})
    table = pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c not in ("p_holm", "verdict")] + ["test", "units"])
    table["p_holm"] = holm(table["p"].to_numpy(dtype=float))
    table["verdict"] = [
        verdict(r.a, r.b, replace(r.test, p_adjusted=r.p_holm), alpha, units=r.units) for r in table.itertuples()
    ]
    return table[TABLE_COLUMNS], left


# ---------------------------------------------------------------------------------------------- 3+ variants
def score_matrix(
    runs: pd.DataFrame, metric: str, *, scale: float = 100.0, match: str | None = None
) -> tuple[pd.DataFrame, list[LeftOut]]:
    """Blocks x variants matrix of ``scale * metric`` (rows: (fold, seed) held by every variant).

    Blocks that some variant lacks are left out whole (each of their runs, with the missing variants as
    the reason), as are the runs :func:`paired_table` would leave out.
    """
    usable, left = _usable_runs(runs, metric)
    if match and match in usable:
        values = usable.groupby(list(PAIR_KEYS))[match].nunique()
        mixed = set(values[values > 1].index)
        mask = np.array([key in mixed for key in _keys(usable)], dtype=bool)
        if mask.any():
            left += _left_out(usable[mask], f"block (fold, seed) scored on different test images ({match} differs)")
            usable = usable[~mask]
    wide = usable.pivot(index=list(PAIR_KEYS), columns="variant", values=metric).sort_index()
    incomplete = wide.isna().any(axis=1)
    for key, row in wide[incomplete].iterrows():
        missing = ", ".join(row.index[row.isna()])
        present = usable.set_index(list(PAIR_KEYS)).loc[[key]].reset_index()
        left += _left_out(present, f"block (fold, seed) incomplete: no run of {missing}")
    wide = wide[~incomplete] * scale
    wide.columns.name = None
    return wide, left


def critical_difference(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Demšar's (2006) Nemenyi critical difference of mean ranks: q_alpha * sqrt(k (k + 1) / (6 N)).

    q_alpha is the studentized range quantile (k groups, infinite dof) / sqrt(2): 2.343, 2.569, 2.728
    for k = 3, 4, 5 at alpha = 0.05 (Demšar's Table 5a).
    """
    q = float(stats.studentized_range.ppf(1.0 - alpha, k, np.inf)) / math.sqrt(2.0)
    return q * math.sqrt(k * (k + 1) / (6.0 * n_blocks))


def mean_ranks(scores: pd.DataFrame) -> pd.Series:
    """Mean rank of each variant (column) over the blocks (rows): rank 1 = best (highest), ties averaged."""
    return scores.rank(axis=1, ascending=False, method="average").mean().sort_values()


def _nemenyi(scores: pd.DataFrame) -> pd.DataFrame:
    try:
        import scikit_posthocs as sp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(POSTHOC_INSTALL) from exc
    p = sp.posthoc_nemenyi_friedman(scores.to_numpy(dtype=float))
    return pd.DataFrame(p.to_numpy(), index=scores.columns, columns=scores.columns)


def friedman_test(scores: pd.DataFrame, alpha: float = 0.05) -> FriedmanResult:
    """Friedman's test (scipy.stats.friedmanchisquare) over the blocks of 3+ variants, with the Nemenyi post-hoc.

    ``scores``: blocks x variants, e.g. from :func:`score_matrix`. When every block ties all variants
    the statistic is 0 and p = 1 (scipy would divide by zero). Read the Nemenyi p-values only when the
    Friedman p is below alpha.
    """
    scores = scores.dropna()
    k, n = scores.shape[1], scores.shape[0]
    if k < 3 or n < 2:
        raise ValueError(f"Friedman's test needs 3+ variants and 2+ complete blocks (got {k} and {n})")
    ranks = mean_ranks(scores)
    cd = critical_difference(k, n, alpha)
    if (scores.nunique(axis=1) == 1).all():
        nemenyi = pd.DataFrame(1.0, index=scores.columns, columns=scores.columns)
        return FriedmanResult(0.0, 1.0, n, ranks, nemenyi, cd, alpha, note="every block ties all variants")
    res = stats.friedmanchisquare(*(scores[c].to_numpy(dtype=float) for c in scores.columns))
    return FriedmanResult(float(res.statistic), float(res.pvalue), n, ranks, _nemenyi(scores), cd, alpha)


def _draw_cd(ax: Any, x0: float, cd: float) -> None:
    """Demšar's CD as a bar of that length above the rank axis (in points above it: clear of the tick labels)."""
    from matplotlib.transforms import offset_copy

    bar = offset_copy(ax.transData, fig=ax.figure, y=24, units="points")
    ax.plot([x0, x0 + cd], [0, 0], transform=bar, color="k", linewidth=1.5, clip_on=False)
    ax.plot([x0, x0, np.nan, x0 + cd, x0 + cd], [-0.1, 0.1, np.nan, -0.1, 0.1], transform=bar, color="k", clip_on=False)
    label = offset_copy(ax.transData, fig=ax.figure, y=27, units="points")
    ax.text(x0 + cd / 2, 0, f"CD = {cd:.2f}", transform=label, ha="center", va="bottom", fontsize=9, clip_on=False)


def critical_difference_figure(
    result: FriedmanResult, *, title: str | None = None, caveat: str | None = FOLD_BLOCKS_CAVEAT
) -> Figure:
    """Critical-difference diagram (scikit-posthocs): mean ranks on an axis (1 = best, left), variants that
    Nemenyi cannot tell apart at ``result.alpha`` joined by a bar, Demšar's CD drawn to scale above.

    ``caveat`` is printed under the title on the figure itself: by default that the blocks are folds sharing
    training data (anti-conservative, descriptive only); pass ``None`` when the blocks are independent data sets.
    """
    try:
        import scikit_posthocs as sp
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(POSTHOC_INSTALL) from exc
    from matplotlib.figure import Figure

    ranks, k = result.mean_ranks, len(result.mean_ranks)
    fig = Figure(figsize=(7.0, 1.9 + 0.35 * k), layout="constrained")
    ax = fig.add_subplot()
    sp.critical_difference_diagram(
        ranks,
        result.nemenyi,
        alpha=result.alpha,
        ax=ax,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
    )
    ax.set_xlim(0.8, max(k, math.ceil(ranks.max())) + 0.2)
    _draw_cd(ax, float(ranks.iloc[0]), result.critical_difference)
    default = (
        f"Mean rank over {result.n_blocks} folds/seeds (1 = best), Friedman p = {result.pvalue:.2g}\n"
        f"joined: no Nemenyi difference at α = {result.alpha:g}"
    )
    heading = title or default
    ax.set_title(f"{heading}\n{_wrap(caveat)}" if caveat else heading, fontsize=9, pad=46)
    return fig


def _wrap(text: str, width: int = 90) -> str:
    return "\n".join(textwrap.wrap(text, width))

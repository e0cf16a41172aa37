"""Significance tests of the comparison report (lanmsff.analysis.stats), against published and independent numbers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lanmsff.analysis.stats import (
    TABLE_COLUMNS,
    LeftOut,
    PairedTest,
    bootstrap_accuracy_ci,
    corrected_resampled_ttest,
    critical_difference,
    friedman_test,
    holm,
    mcnemar,
    mean_ranks,
    paired_table,
    score_matrix,
    verdict,
    wilcoxon_pvalue,
)

# ---------------------------------------------------------------------------------------------- worked example
# 10-fold CV on KDEF (4,900 images): n_train = 4410, n_test = 490 per fold. Fold accuracies in % (fixed numbers).
ACC_A = np.array([92.45, 93.88, 91.22, 94.08, 92.86, 93.47, 90.61, 92.65, 93.67, 91.84])
ACC_B = np.array([90.20, 92.04, 90.00, 91.63, 91.43, 92.24, 89.59, 90.82, 91.02, 90.61])
ACC_C = np.array([88.37, 90.00, 87.14, 89.39, 88.78, 86.94, 89.80, 88.16, 87.55, 89.18])
ACC_D = np.array([87.96, 89.59, 88.16, 88.57, 88.98, 86.33, 88.37, 88.57, 87.14, 88.37])
N_TRAIN, N_TEST = 4410, 490


def test_corrected_ttest_reproduces_weka_and_the_hand_computation() -> None:
    # Independent implementation: Weka 3.6.14 (Debian package `weka`), class weka.experiment.PairedStatsCorrected
    # -- the corrected resampled t-test of Nadeau & Bengio (2003) as evaluated by Bouckaert & Frank (PAKDD 2004),
    # what Weka's Experimenter runs as PairedCorrectedTTester. Driven by a 10-line Java program:
    #     PairedStatsCorrected s = new PairedStatsCorrected(0.05, 490.0 / 4410.0);
    #     for (i...) s.add(a[i], b[i]);  s.calculateDerived();  print s.differencesProbability, ...Stats.mean/.stdDev
    # Weka computes p as Statistics.FProbability(t^2, 1, k - 1) (an F tail from its own incomplete beta), not scipy.
    # Printed for A vs B: count 10, mean 1.7150000000000005, sd 0.57823966580572220, p 0.00011744414251296583;
    # plain PairedStats (no correction): p 6.0852716602035640e-06. For C vs D: mean 0.32700000000000100,
    # sd 0.70150710774889520, p 0.33683120731143745 (plain: 0.17456180030223573).
    #
    # By hand, A vs B: d = 2.25 1.84 1.22 2.45 1.43 1.23 1.02 1.83 2.65 1.23; sum 17.15, mean 1.715;
    # sum of squared deviations 3.00925, sample variance s^2 = 3.00925 / 9 = 0.334361; correction
    # 1/k + n_test/n_train = 0.1 + 490/4410 = 0.211111; corrected variance of the mean 0.334361 * 0.211111 = 0.0705873,
    # se = 0.265683; t = 1.715 / 0.265683 = 6.4551 with 9 dof; two-sided p = 2 * (1 - T9(6.4551)) = 1.1744e-4;
    # t_{0.975, 9} = 2.262157, CI = 1.715 -+ 2.262157 * 0.265683 = [1.1140, 2.3160].
    r = corrected_resampled_ttest(ACC_A - ACC_B, N_TRAIN, N_TEST)
    assert (r.n, r.dof) == (10, 9)
    assert r.mean == pytest.approx(1.7150000000000005, rel=1e-12)
    assert np.std(ACC_A - ACC_B, ddof=1) == pytest.approx(0.57823966580572220, rel=1e-12)  # Weka's sd
    assert r.pvalue == pytest.approx(0.00011744414251296583, rel=1e-9)
    assert r.statistic == pytest.approx(6.4551, abs=1e-4)
    assert (r.ci_low, r.ci_high) == (pytest.approx(1.1140, abs=1e-4), pytest.approx(2.3160, abs=1e-4))
    plain = stats.ttest_rel(ACC_A, ACC_B).pvalue
    assert plain == pytest.approx(6.0852716602035640e-06, rel=1e-9)  # the same Weka run, uncorrected
    r2 = corrected_resampled_ttest(ACC_C - ACC_D, N_TRAIN, N_TEST)
    assert r2.mean == pytest.approx(0.327, rel=1e-12)
    assert r2.pvalue == pytest.approx(0.33683120731143745, rel=1e-9)
    assert r2.ci_low < 0 < r2.ci_high


def test_corrected_ttest_agrees_with_ttest_1samp_on_rescaled_differences() -> None:
    # Second route: stretch the differences about their mean by sqrt(k * (1/k + n_test/n_train)); the plain one-sample
    # t-test of the stretched values then has exactly the corrected standard error, so t, p and CI must agree.
    d = ACC_C - ACC_D
    k = d.size
    stretched = d.mean() + (d - d.mean()) * math.sqrt(k * (1 / k + N_TEST / N_TRAIN))
    ref = stats.ttest_1samp(stretched, 0.0)
    ci = ref.confidence_interval(0.9)
    r = corrected_resampled_ttest(d, N_TRAIN, N_TEST, alpha=0.1)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert (r.ci_low, r.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))


def test_corrected_ttest_edge_cases() -> None:
    same = corrected_resampled_ttest([1.0, 1.0, 1.0], N_TRAIN, N_TEST)  # Weka: p = 0 when sd = 0 and mean != 0
    assert (same.pvalue, same.mean, same.ci_low, same.ci_high) == (0.0, 1.0, 1.0, 1.0)
    assert "zero variance" in same.note
    # diffs equal up to float rounding (92.45 - 92.15 != 94.35 - 94.05 exactly) count as equal, too
    rounding = corrected_resampled_ttest(np.array([92.45, 94.35, 90.8]) - np.array([92.15, 94.05, 90.5]), 90, 10)
    assert rounding.pvalue == 0.0
    zero = corrected_resampled_ttest([0.0, 0.0, 0.0, 0.0], N_TRAIN, N_TEST)  # Weka: p = 1 when all are zero
    assert (zero.pvalue, zero.mean) == (1.0, 0.0)
    one = corrected_resampled_ttest([2.0], N_TRAIN, N_TEST)
    assert math.isnan(one.pvalue) and one.mean == 2.0 and "no test" in one.note
    assert math.isnan(corrected_resampled_ttest([], N_TRAIN, N_TEST).mean)
    unknown = corrected_resampled_ttest(ACC_A - ACC_B, math.nan, N_TEST)
    assert math.isnan(unknown.pvalue) and "n_train/n_test unknown" in unknown.note


# ---------------------------------------------------------------------------------------------- Wilcoxon, Holm
def test_wilcoxon_on_darwins_plants_and_by_enumeration() -> None:
    # Darwin's cross- vs self-fertilised Zea mays, height differences in 1/8 inch (Fisher 1935, "The Design of
    # Experiments"; the example of scipy.stats.wilcoxon's docs, p = 0.041259765625). The negative differences have
    # ranks 10 (48) and 14 (67): W- = 24. Exact two-sided p = 2 * #{sign patterns with W <= 24} / 2^15, enumerated.
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    assert wilcoxon_pvalue(d) == pytest.approx(0.041259765625, rel=1e-12)
    signs = np.array(list(itertools.product([0, 1], repeat=15)), dtype=bool)
    w_plus = signs @ np.arange(1, 16)
    assert wilcoxon_pvalue(d) == pytest.approx(2 * np.mean(w_plus <= 24), rel=1e-12)


def test_wilcoxon_edge_cases() -> None:
    assert wilcoxon_pvalue([0.0, 0.0, 0.0]) == 1.0
    assert math.isnan(wilcoxon_pvalue([1.0]))
    # 10 folds, all positive: the smallest exact p, 2 / 2^10
    assert wilcoxon_pvalue(np.arange(1.0, 11.0)) == pytest.approx(2 / 1024)
    # zeros are dropped (zero_method="wilcox") before ranking
    assert wilcoxon_pvalue([0.0, 1.0, 2.0, 3.0]) == pytest.approx(wilcoxon_pvalue([1.0, 2.0, 3.0]))


def test_holm_known_values() -> None:
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; running max
    # 0.02, 0.03, 0.06, 0.06; back in input order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # 5 x 0.01, 4 x 0.02, 3 x 0.03, then 2 x 0.04 = 0.08 and 0.05 are raised to the running max 0.09
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.04, math.nan, 0.01])  # NaN stays NaN and does not count: m = 2
    assert out[[0, 2]] == pytest.approx([0.04, 0.02]) and math.isnan(out[1])
    assert holm([]).size == 0


def test_holm_matches_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(3).uniform(0, 0.2, size=12)
    assert holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1], rel=1e-12)


# ---------------------------------------------------------------------------------------------- single split
def test_bootstrap_ci_is_scipys_bca_and_close_to_the_binomial_interval() -> None:
    correct = np.zeros(1000, dtype=bool)
    correct[:870] = True
    np.random.default_rng(1).shuffle(correct)
    ci = bootstrap_accuracy_ci(correct, n_resamples=2000, confidence=0.95, seed=7)
    ref = stats.bootstrap(
        (correct.astype(float),), np.mean, n_resamples=2000, method="BCa", rng=np.random.default_rng(7)
    ).confidence_interval
    assert (ci.accuracy, ci.n, ci.method) == (87.0, 1000, "bootstrap BCa")
    assert (ci.low, ci.high) == (pytest.approx(100 * ref.low, abs=1e-9), pytest.approx(100 * ref.high, abs=1e-9))
    # The normal approximation: 87 -+ 1.96 * sqrt(0.87 * 0.13 / 1000) * 100 = [84.92, 89.08]; the bootstrap's
    # Monte Carlo error with 2,000 resamples is ~0.1 point
    assert ci.low == pytest.approx(84.92, abs=0.3) and ci.high == pytest.approx(89.08, abs=0.3)


def test_bootstrap_ci_all_correct_falls_back_to_the_exact_interval() -> None:
    # Clopper-Pearson for 50 of 50: the lower limit solves p^50 = 0.025, p = 0.025^(1/50) = 0.92888
    ci = bootstrap_accuracy_ci(np.ones(50, dtype=bool))
    assert ci.method == "exact binomial"
    assert (ci.accuracy, ci.high) == (100.0, 100.0)
    assert ci.low == pytest.approx(100 * 0.025 ** (1 / 50), rel=1e-9)
    with pytest.raises(ValueError):
        bootstrap_accuracy_ci(np.array([], dtype=bool))


def _predictions(only_a: int, only_b: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * only_a + [0] * only_b + [1] * both + [0] * neither, dtype=bool)
    b = np.array([0] * only_a + [1] * only_b + [1] * both + [0] * neither, dtype=bool)
    return a, b


def test_mcnemar_exact_small_and_large_counts() -> None:
    # 1 image only A got right, 5 only B: p = 2 * P(X <= 1), X ~ Bin(6, 1/2) = 2 * (1 + 6) / 64 = 0.21875
    r = mcnemar(*_predictions(1, 5, 90, 4))
    assert r.pvalue == pytest.approx(14 / 64, rel=1e-12)
    assert r.mean == pytest.approx(-4.0) and r.n == 100 and r.test == "McNemar exact"
    # 60 vs 35 discordant of 1000: chi-square with continuity (|60 - 35| - 1)^2 / 95 = 6.063, p = 0.0138;
    # the exact test gives nearly the same for counts this large
    big = mcnemar(*_predictions(60, 35, 800, 105))
    assert big.pvalue == pytest.approx(stats.chi2.sf(24**2 / 95, 1), abs=0.002)
    assert big.mean == pytest.approx(2.5) and big.ci_low < 2.5 < big.ci_high
    same = mcnemar(*_predictions(0, 0, 7, 3))
    assert (same.pvalue, same.mean) == (1.0, 0.0)
    with pytest.raises(ValueError):
        mcnemar([True, False], [True])


def test_mcnemar_matches_statsmodels() -> None:
    contingency = pytest.importorskip("statsmodels.stats.contingency_tables")
    for only_a, only_b in ((1, 5), (3, 11), (60, 35)):
        ref = contingency.mcnemar([[100, only_a], [only_b, 50]], exact=True).pvalue
        assert mcnemar(*_predictions(only_a, only_b, 100, 50)).pvalue == pytest.approx(ref, rel=1e-9)


# ---------------------------------------------------------------------------------------------- verdict
def _result(mean: float, p: float, **kwargs) -> PairedTest:
    return PairedTest("corrected t-test", 10, mean, mean - 2.5, mean + 2.5, 2.4, p, 9, **kwargs)


def test_verdict_lines() -> None:
    assert verdict("lanmsff", "lanmsff_attn_none", _result(2.9, 0.031)) == (
        "lanmsff vs lanmsff_attn_none: +2.9 points [0.4, 5.4], p = 0.031 (corrected t-test, 10 folds): better"
    )
    assert verdict("a", "b", _result(-3.0, 0.0004)).endswith("p < 0.001 (corrected t-test, 10 folds): worse")
    assert verdict("a", "b", _result(1.0, 0.2)).endswith(": no detectable difference")
    held = verdict("a", "b", _result(2.9, 0.031, p_adjusted=0.093))  # the Holm-adjusted p decides
    assert held.endswith("p = 0.093 (corrected t-test, 10 folds, Holm-adjusted): no detectable difference")
    assert "p = 0.0499" in verdict("a", "b", _result(1.0, 0.0499))  # rounding never crosses alpha
    assert "not tested" in verdict("a", "b", corrected_resampled_ttest([1.0], N_TRAIN, N_TEST))


# ---------------------------------------------------------------------------------------------- simulations
K = 10
RHO_CV = N_TEST / (N_TRAIN + N_TEST)  # = 1/k: the fold correlation Nadeau & Bengio's correction assumes for k-fold CV


def _null_studies(rng: np.random.Generator, n_studies: int, rho: float, sd: float = 2.0) -> np.ndarray:
    """Fold differences (A - B, points) of studies with no true difference: sd ``sd``, correlation ``rho``
    between the folds of a study (a shared per-study component, as overlapping training sets give)."""
    shared = rng.normal(0, sd * math.sqrt(rho), size=(n_studies, 1))
    return shared + rng.normal(0, sd * math.sqrt(1 - rho), size=(n_studies, K))


def _rejection_rate(diffs: np.ndarray, corrected: bool = True) -> float:
    if corrected:
        p = [corrected_resampled_ttest(d, N_TRAIN, N_TEST).pvalue for d in diffs]
    else:
        p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    return float(np.mean(np.asarray(p) < 0.05))


def test_false_positive_rate_is_nominal_with_cv_like_correlation() -> None:
    # CV-like null: fold differences share a per-study component with correlation rho = n_test / n = 1/k. Under it
    # the corrected statistic is exactly t(k - 1): the expected rejection rate is 5 %. Over 2,000 studies the
    # binomial sd of the observed rate is sqrt(0.05 * 0.95 / 2000) = 0.0049, so [0.03, 0.07] is +- 4 sd.
    diffs = _null_studies(np.random.default_rng(2024), 2000, RHO_CV)
    corrected = _rejection_rate(diffs)
    assert 0.03 <= corrected <= 0.07
    # The plain paired t-test divides the variance by k only: its t is sqrt(k * (1/k + 1/9)) = 1.45 times too big,
    # rejecting ~15 % of these null studies (P(|t9| > 2.262 / 1.45)); certainly more than 10 %
    assert _rejection_rate(diffs, corrected=False) > 0.10


def test_corrected_test_is_conservative_with_independent_fold_noise() -> None:
    # Independent folds (rho = 0): the correction over-inflates the variance (0.211 instead of 0.1), the expected
    # rate is P(|t9| > 2.262 * sqrt(2.111)) = 0.9 %; <= 3 % leaves > 4 binomial sd (0.0021 each) of margin, while the
    # plain t-test is the exact one here (5 %)
    diffs = _null_studies(np.random.default_rng(7), 2000, rho=0.0)
    assert _rejection_rate(diffs) <= 0.03
    assert 0.03 <= _rejection_rate(diffs, corrected=False) <= 0.07


def _study_runs(rng: np.random.Generator, effect: float) -> pd.DataFrame:
    """Runs (fractions, as in compare's frames) of A and B over 10 folds: fold difficulty sd 2 points shared by both
    variants, run noise sd 1.4 points each (fold results sd ~2.4 points), A = B + ``effect`` points on every fold."""
    base = 85 + rng.normal(0, 2, size=K)
    rows = [
        {"variant": v, "fold": f, "seed": 0, "acc": (base[f] + shift + rng.normal(0, 1.4)) / 100}
        for v, shift in (("A", effect), ("B", 0.0))
        for f in range(K)
    ]
    return pd.DataFrame(rows).assign(n_train=N_TRAIN, n_test=N_TEST)


def test_planted_effect_is_better_and_noise_is_not() -> None:
    # +5 points on every fold with these noise levels: difference sd 2 points, corrected se ~0.9, t ~5.5; the power
    # of the test is > 99.9 %, so every one of 30 studies says "better"
    rng = np.random.default_rng(11)
    planted = [paired_table(_study_runs(rng, 5.0), "acc")[0].iloc[0] for _ in range(30)]
    assert all(row.verdict.endswith(": better") for row in planted), [r.verdict for r in planted if "better" not in r]
    assert np.mean([row["difference"] for row in planted]) == pytest.approx(5.0, abs=0.5)
    # same distribution: "better" or "worse" only at the false-positive rate (independent noise: ~1 %)
    noise = [paired_table(_study_runs(rng, 0.0), "acc")[0].iloc[0].verdict for _ in range(100)]
    assert np.mean([v.endswith("no detectable difference") for v in noise]) >= 0.95


# ---------------------------------------------------------------------------------------------- pairing
def _runs(spec: dict[str, list[tuple[int, int, float]]]) -> pd.DataFrame:
    rows = [
        {"variant": v, "fold": f, "seed": s, "test/acc": acc, "n_train": 90, "n_test": 10, "status": "ok"}
        for v, runs in spec.items()
        for f, s, acc in runs
    ]
    return pd.DataFrame(rows)


def test_pairing_leaves_out_mismatched_and_duplicate_runs() -> None:
    runs = _runs(
        {
            "A": [(0, 1, 0.90), (1, 1, 0.92), (2, 1, 0.91), (3, 1, 0.93), (3, 1, 0.99)],  # (3, 1) twice
            "B": [(0, 1, 0.88), (1, 1, 0.90), (2, 2, 0.89), (3, 1, 0.90), (4, 1, 0.90)],  # fold 2 other seed, fold 4
        }
    )
    runs.loc[len(runs)] = {"variant": "B", "fold": 5, "seed": 1, "test/acc": None, "status": "failed"}
    table, left = paired_table(runs, "test/acc")
    assert list(table.columns) == TABLE_COLUMNS
    row = table.iloc[0]
    assert (row.a, row.b, row.n, row.folds) == ("A", "B", 2, 2)  # only folds 0 and 1 pair up
    assert row["difference"] == pytest.approx(2.0)  # (0.90 - 0.88 + 0.92 - 0.90) / 2 * 100
    assert set(left) == {
        LeftOut("B", 5, 1, "run not successful"),
        LeftOut("A", 3, 1, "duplicate (variant, fold, seed)"),
        LeftOut("A", 2, 1, "no partner with the same fold and seed in B"),
        LeftOut("B", 2, 2, "no partner with the same fold and seed in A"),
        LeftOut("B", 3, 1, "no partner with the same fold and seed in A"),  # its partner was a duplicate
        LeftOut("B", 4, 1, "no partner with the same fold and seed in A"),
    }
    assert sum(lo == LeftOut("A", 3, 1, "duplicate (variant, fold, seed)") for lo in left) == 2  # both copies


def test_paired_table_holm_reference_and_seeds() -> None:
    folds = [(f, s) for f in range(5) for s in (1, 2)]
    noise = np.random.default_rng(5).normal(0, 0.004, size=(3, len(folds)))
    spec = {
        v: [(f, s, 0.8 + shift + e) for (f, s), e in zip(folds, noise[i])]
        for i, (v, shift) in enumerate([("base", 0.0), ("big", 0.05), ("tiny", 0.002)])
    }
    table, left = paired_table(_runs(spec), "test/acc", reference="base")
    assert left == []
    assert list(zip(table.a, table.b)) == [("big", "base"), ("tiny", "base")]
    assert (table.n.tolist(), table.folds.tolist(), table.seeds.tolist()) == ([10, 10], [5, 5], [2, 2])
    assert table.p_holm.to_numpy() == pytest.approx(holm(table.p.to_numpy()))
    assert table["difference"].tolist() == pytest.approx([5.0, 0.2], abs=0.5)
    assert table.verdict[0].startswith("big vs base: +4.8 points [4.3, 5.3], p < 0.001")
    assert "10 fold x seed pairs (5 folds x 2 seeds), Holm-adjusted): better" in table.verdict[0]
    with pytest.raises(ValueError, match="reference"):
        paired_table(_runs(spec), "test/acc", reference="missing")
    with pytest.raises(ValueError, match="lack"):
        paired_table(_runs(spec).drop(columns="seed"), "test/acc")


# ---------------------------------------------------------------------------------------------- Friedman, CD diagram
# Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30, Table 6: AUC of four
# C4.5 variants on 14 data sets. The paper reports mean ranks 3.143, 2.000, 2.893, 1.964, chi2_F = 9.28, F_F = 3.69,
# CD = 1.25 at alpha 0.05 (no pair differs) and 1.12 at 0.10 (C4.5 worse than C4.5+m and C4.5+m+cf). Its ranks come
# from the unrounded AUCs: in the table's rounding "voting" ties C4.5+cf and C4.5+m+cf at 0.975, and only with
# C4.5+cf ahead there (0.97501) do the published ranks come out.
DEMSAR = pd.DataFrame(
    [
        [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
        [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
        [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
        [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
        [0.972, 0.981, 0.97501, 0.975], [0.957, 0.978, 0.946, 0.970],
    ],
    columns=["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"],
)  # fmt: skip


@pytest.mark.parametrize(("k", "q"), [(3, 2.343), (4, 2.569), (5, 2.728)])
def test_critical_difference_uses_demsars_q(k: int, q: float) -> None:
    # Table 5(a) of Demšar (2006), truncated to 3 decimals
    assert critical_difference(k, 6) / math.sqrt(k * (k + 1) / 36) == pytest.approx(q, abs=1e-3)


def test_friedman_and_nemenyi_reproduce_demsar() -> None:
    pytest.importorskip("scikit_posthocs")
    r = friedman_test(DEMSAR, alpha=0.05)
    assert r.mean_ranks[DEMSAR.columns].to_numpy() == pytest.approx([3.143, 2.000, 2.893, 1.964], abs=1e-3)
    ranks, n, k = r.mean_ranks[DEMSAR.columns].to_numpy(), 14, 4
    chi2_f = 12 * n / (k * (k + 1)) * (np.sum(ranks**2) - k * (k + 1) ** 2 / 4)  # Demšar's formula: no tie correction
    assert chi2_f == pytest.approx(9.28, abs=5e-3)
    assert (n - 1) * chi2_f / (n * (k - 1) - chi2_f) == pytest.approx(3.69, abs=5e-3)
    ref = stats.friedmanchisquare(*(DEMSAR[c] for c in DEMSAR.columns))  # scipy corrects for the ties
    assert (r.statistic, r.pvalue) == (pytest.approx(ref.statistic, rel=1e-12), pytest.approx(ref.pvalue, rel=1e-12))
    assert r.critical_difference == pytest.approx(1.25, abs=5e-3)
    assert (r.nemenyi.to_numpy() >= 0.05).all()
    r10 = friedman_test(DEMSAR, alpha=0.10)
    assert r10.critical_difference == pytest.approx(1.12, abs=5e-3)
    pairs = {frozenset((a, b)) for a, b in itertools.combinations(DEMSAR.columns, 2) if r10.nemenyi.loc[a, b] < 0.10}
    assert pairs == {frozenset(("C4.5", "C4.5+m")), frozenset(("C4.5", "C4.5+m+cf"))}
    for a, b in itertools.combinations(DEMSAR.columns, 2):  # Nemenyi p < alpha <=> rank gap > CD
        gap = abs(r10.mean_ranks[a] - r10.mean_ranks[b])
        assert (r10.nemenyi.loc[a, b] < 0.10) == (gap > r10.critical_difference)


# Hand-ranked blocks: 4 folds x 5 variants; rank 1 = the highest accuracy, ties averaged
HAND = pd.DataFrame(
    {
        "v1": [90.0, 91.0, 89.0, 92.0],
        "v2": [88.0, 91.0, 90.0, 90.0],
        "v3": [87.0, 85.0, 86.0, 88.0],
        "v4": [80.0, 84.0, 81.0, 83.0],
        "v5": [86.0, 83.0, 88.0, 89.0],
    }
)
# fold 0: 90 88 87 80 86 -> v1 1, v2 2, v3 3, v5 4, v4 5
# fold 1: 91 91 85 84 83 -> v1 1.5, v2 1.5 (tie), v3 3, v4 4, v5 5
# fold 2: 89 90 86 81 88 -> v2 1, v1 2, v5 3, v3 4, v4 5
# fold 3: 92 90 88 83 89 -> v1 1, v2 2, v5 3, v3 4, v4 5
# k = 5: v1 (1 + 1.5 + 2 + 1) / 4 = 1.375, v2 6.5 / 4, v3 14 / 4, v4 19 / 4, v5 15 / 4 (sum 15 = 1 + ... + 5).
# k = 3 (v1-v3): v3 is last on every fold -> 3; v1 and v2 as above. k = 4: v4 is last everywhere -> 4.
HAND_RANKS = {
    3: {"v1": 1.375, "v2": 1.625, "v3": 3.0},
    4: {"v1": 1.375, "v2": 1.625, "v3": 3.0, "v4": 4.0},
    5: {"v1": 1.375, "v2": 1.625, "v3": 3.5, "v4": 4.75, "v5": 3.75},
}


@pytest.mark.parametrize("k", [3, 4, 5])
def test_cd_figure_builds_with_hand_computed_ranks(k: int) -> None:
    sp = pytest.importorskip("scikit_posthocs")
    from lanmsff.analysis.stats import critical_difference_figure

    scores, expected = HAND.iloc[:, :k], HAND_RANKS[k]
    assert mean_ranks(scores).to_dict() == pytest.approx(expected)
    assert list(mean_ranks(scores).index) == sorted(expected, key=expected.get)  # best first
    r = friedman_test(scores)
    ref = sp.posthoc_nemenyi_friedman(scores.to_numpy())
    assert r.nemenyi.to_numpy() == pytest.approx(ref.to_numpy())
    fig = critical_difference_figure(r, title="cd")
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name, rank in expected.items():
        assert any(name in t and f"({rank:.2f})" in t for t in texts), texts
    assert any(t.startswith("CD = ") for t in texts)


def test_cd_crossbars_follow_the_posthoc() -> None:
    pytest.importorskip("scikit_posthocs")
    from lanmsff.analysis.stats import critical_difference_figure

    # the same order on all 10 folds: mean ranks 1, 2, 3; CD = 2.343 * sqrt(12 / 60) = 1.048, so a-b and b-c are
    # joined (gap 1) and a-c is not (gap 2): two crossbars, and a significant Friedman test
    scores = pd.DataFrame({"a": np.full(10, 90.0), "b": np.full(10, 85.0), "c": np.full(10, 80.0)})
    scores += np.random.default_rng(0).normal(0, 0.1, size=(10, 1))
    r = friedman_test(scores)
    assert r.pvalue < 0.001 and r.critical_difference == pytest.approx(1.048, abs=1e-3)
    fig = critical_difference_figure(r)
    thick = [line for line in fig.axes[0].lines if line.get_linewidth() == 2]  # scikit-posthocs' crossbars
    bars = [tuple(line.get_xdata()) for line in thick]
    assert sorted(tuple(sorted(b)) for b in bars) == [(1.0, 2.0), (2.0, 3.0)]


def test_score_matrix_and_friedman_edge_cases() -> None:
    spec = {v: [(f, 1, 0.8 + 0.01 * i) for f in range(4)] for i, v in enumerate(["a", "b", "c"])}
    spec["c"] = spec["c"][:3]  # c lacks fold 3: the whole block goes
    wide, left = score_matrix(_runs(spec), "test/acc")
    assert wide.shape == (3, 3) and list(wide.columns) == ["a", "b", "c"]
    assert wide["c"].tolist() == pytest.approx([82.0, 82.0, 82.0])
    assert {lo.reason for lo in left} == {"block (fold, seed) incomplete: no run of c"}
    assert sorted(lo.variant for lo in left) == ["a", "b"]
    tied = friedman_test(pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 2.0], "c": [1.0, 2.0]}))
    assert (tied.statistic, tied.pvalue) == (0.0, 1.0)
    with pytest.raises(ValueError, match="3\\+ variants"):
        friedman_test(wide[["a", "b"]])


def test_cd_figure_says_that_folds_are_not_independent_blocks() -> None:
    pytest.importorskip("scikit_posthocs")
    from lanmsff.analysis.stats import FOLD_BLOCKS_CAVEAT, critical_difference_figure

    result = friedman_test(HAND)
    titled = critical_difference_figure(result, title="cd").axes[0].get_title()
    assert titled.startswith("cd\n") and " ".join(titled.split("\n")[1:]) == FOLD_BLOCKS_CAVEAT
    assert "anti-conservative" in FOLD_BLOCKS_CAVEAT and "corrected t-test" in FOLD_BLOCKS_CAVEAT
    default = critical_difference_figure(result).axes[0].get_title()
    assert default.startswith("Mean rank over 4 folds/seeds") and "anti-conservative" in default
    assert "anti-conservative" not in critical_difference_figure(result, caveat=None).axes[0].get_title()

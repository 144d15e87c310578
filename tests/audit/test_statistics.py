"""The audit's paired statistics against scipy and against cases whose answer is known."""
import numpy as np
import pytest
from scipy.stats import binomtest

from convdeploy.audit import statistics as st


def _pairs(both: int, b: int, c: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes with ``b`` samples only the reference gets right, ``c`` only the candidate."""
    ref = np.array([1] * both + [1] * b + [0] * c + [0] * neither, dtype=bool)
    cand = np.array([1] * both + [0] * b + [1] * c + [0] * neither, dtype=bool)
    return ref, cand


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 5), (12, 3), (3, 12), (40, 25),
                                 (100, 130), (7, 0)])
def test_mcnemar_exact_equals_scipy_binomtest(b, c):
    ref, cand = _pairs(500, b, c, 80)
    test = st.mcnemar(ref, cand)
    assert (test.b, test.c) == (b, c)
    expected = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
    assert test.p_exact == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_mid_p_subtracts_half_the_observed_probability_twice():
    from scipy.stats import binom

    ref, cand = _pairs(50, 12, 3, 5)
    test = st.mcnemar(ref, cand)
    assert test.p_mid == pytest.approx(binomtest(3, 15, 0.5).pvalue - binom.pmf(3, 15, 0.5))
    assert test.p_mid < test.p_exact
    # a known textbook value: b=12, c=3 gives exact p = 0.0352
    assert test.p_exact == pytest.approx(0.03515625)


def test_verdicts_follow_the_exact_test():
    ref, cand = _pairs(900, 30, 8, 62)
    test = st.mcnemar(ref, cand)
    assert st.verdict(test, -0.022).startswith("worse than float")
    ref, cand = _pairs(900, 6, 4, 90)
    assert st.verdict(st.mcnemar(ref, cand), -0.002) == "indistinguishable from float at 0.05"


def test_bootstrap_of_identical_models_is_a_point():
    ref, _ = _pairs(800, 0, 0, 200)
    assert st.paired_bootstrap(ref, ref) == (0.0, 0.0, 0.0)


def test_bootstrap_interval_matches_the_normal_theory_of_a_known_case():
    """Per-sample differences of -1 (b), +1 (c), 0 otherwise: mean (c-b)/n, variance known;
    with n = 10,000 the percentile interval equals mean +- 1.96 sd/sqrt(n) to within 10%."""
    n, b, c = 10_000, 300, 200
    ref, cand = _pairs(n - b - c - 1000, b, c, 1000)
    diff, low, high = st.paired_bootstrap(ref, cand, resamples=4000, seed=1)
    d = np.r_[np.full(b, -1.0), np.full(c, 1.0), np.zeros(n - b - c)]
    half = 1.959964 * d.std() / np.sqrt(n)
    assert diff == pytest.approx(-0.01)
    assert low == pytest.approx(diff - half, rel=0.1)
    assert high == pytest.approx(diff + half, rel=0.1)
    assert st.paired_bootstrap(ref, cand, resamples=4000, seed=1) == (diff, low, high)


def test_per_class_deltas_name_the_class_that_loses():
    labels = np.array([0, 0, 1, 1, 2, 2])
    ref = np.array([0, 0, 1, 1, 2, 2])
    cand = np.array([0, 0, 1, 0, 2, 2])
    assert st.per_class_deltas(labels, ref, cand) == {0: 0.0, 1: -0.5, 2: 0.0}



@pytest.mark.parametrize("b,c", [(41, 39), (3, 0), (0, 5), (12, 12)])
def test_drop_upper_bound_is_the_clopper_pearson_bound_of_the_discordant_pairs(b, c):
    ref, cand = _pairs(900, b, c, 0)
    n, m = len(ref), b + c
    # one-sided 95% upper bound = the high end of the two-sided 90% exact interval
    high = 1.0 if b == m else binomtest(b, m).proportion_ci(0.90, method="exact").high
    assert st.drop_upper_bound(ref, cand, confidence=0.95) == pytest.approx(m * (2 * high - 1) / n)
    assert st.drop_upper_bound(ref, cand, confidence=0.95) >= (b - c) / n  # not below it


def test_drop_upper_bound_is_zero_without_discordant_pairs_and_covers_the_true_drop():
    ref, cand = _pairs(500, 0, 0, 0)
    assert st.drop_upper_bound(ref, cand) == 0.0
    # coverage: a candidate that truly loses 1 point (2% of samples flip against it, 1% for
    # it) is bounded above 1 point in at least 95% of 2,000 simulated 1,000-sample splits
    rng = np.random.default_rng(0)
    covered = 0
    for _ in range(2000):
        u = rng.random(1000)
        ref = u >= 0.01  # reference wrong on the 1% the candidate gets right
        cand = (u < 0.01) | (u >= 0.03)
        covered += st.drop_upper_bound(ref, cand, confidence=0.95) >= 0.01
    assert covered / 2000 >= 0.95
    with pytest.raises(ValueError, match="confidence"):
        st.drop_upper_bound(ref, cand, confidence=1.0)

"""Seed-level intervals (study.intervals): against independent computations and on effects whose answer is known."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given, strategies as st

from study import intervals as I

finite = st.floats(-1.0, 1.0, allow_nan=False)


@given(values=st.lists(finite, min_size=2, max_size=12), level=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_t_interval_matches_scipys_one_sample_t_test(values, level):
    iv = I.t_interval(values, level)
    a = np.asarray(values)
    if np.ptp(a) == 0:
        assert iv.lo == iv.hi == iv.mean
        return
    ci = scipy.stats.ttest_1samp(a, 0.0).confidence_interval(confidence_level=level)
    # two computations of mean ± t·s/√n: each a sum of ≤ 12 terms of size ≤ 1 (rounding ~1e-15, margin 1e3)
    assert iv.lo == pytest.approx(ci.low, abs=1e-12) and iv.hi == pytest.approx(ci.high, abs=1e-12)
    assert iv.lo <= iv.mean <= iv.hi and iv.n == len(values)


def test_t_interval_covers_the_true_mean_at_its_level():
    # 2,000 draws of 5 normal seeds: the 95 % interval covers the mean in a Binomial(2000, 0.95) share;
    # its 4-sigma band is 0.95 ± 4·√(0.95·0.05/2000) = 0.95 ± 0.0195
    rng = np.random.default_rng(0)
    draws = rng.normal(0.3, 0.02, (2000, 5))
    hits = sum(iv.lo <= 0.3 <= iv.hi for iv in map(I.t_interval, draws))
    assert abs(hits / 2000 - 0.95) <= 4 * math.sqrt(0.95 * 0.05 / 2000)


def test_bootstrap_interval_brackets_the_mean_and_agrees_with_t_on_normal_seeds():
    rng = np.random.default_rng(1)
    a = rng.normal(0.05, 0.01, 30)
    b, t = I.bootstrap_interval(a), I.t_interval(a)
    assert b.lo < a.mean() < b.hi
    # both estimate the same interval, half-width t·s/√n ≈ 0.0037 here; with 30 seeds their ends differ by
    # a fraction of it (the bootstrap under-covers slightly at this n): within half a half-width
    half = (t.hi - t.lo) / 2
    assert abs(b.lo - t.lo) < half / 2 and abs(b.hi - t.hi) < half / 2


def test_degenerate_samples():
    flat = I.bootstrap_interval([0.2, 0.2, 0.2])
    assert flat.lo == flat.hi == flat.mean == pytest.approx(0.2, abs=1e-15)   # the mean of three 0.2s rounds
    one = I.t_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.lo)
    assert I.t_interval([]).n == 0
    with pytest.raises(ValueError, match="finite"):
        I.t_interval([0.1, float("nan")])
    with pytest.raises(ValueError, match="level=1.5"):
        I.t_interval([0.1, 0.2], level=1.5)


@pytest.mark.parametrize("values,verdict", [
    ([0.05, 0.06, 0.055], "reproduced"),
    ([-0.05, -0.06, -0.055], "not reproduced"),
    ([0.05, -0.04, 0.01], "inconclusive (interval contains 0"),
    ([0.05, 0.06], "inconclusive (2 seeds < 3"),
    ([], "no runs"),
])
def test_decide_interval(values, verdict):
    assert I.decide_interval(I.t_interval(values)).startswith(verdict)


def _front(seed, sizes, accs):
    return pd.DataFrame({"random_state": seed, "compression_ratio_target": sizes, "accuracy": accs})


def test_per_seed_front_gaps_pair_seeds_and_give_a_known_interval():
    # method a beats b by exactly 0.02 + 0.01·seed at every matched size; seed 9 exists only in a (unpaired)
    a = pd.concat([_front(s, [0.05, 0.10, 0.20], np.array([0.80, 0.85, 0.90]) + 0.02 + 0.01 * s)
                   for s in (0, 1, 2, 9)])
    b = pd.concat([_front(s, [0.05, 0.10, 0.20], [0.80, 0.85, 0.90]) for s in (0, 1, 2)])
    iv, per_seed = I.front_gap_interval(a, b, min_coverage=0.5)
    assert list(per_seed["seed"]) == [0, 1, 2]
    np.testing.assert_allclose(per_seed["mean_gap"], [0.02, 0.03, 0.04], atol=1e-12)
    ref = scipy.stats.ttest_1samp([0.02, 0.03, 0.04], 0.0).confidence_interval(0.95)
    assert iv.mean == pytest.approx(0.03) and iv.lo == pytest.approx(ref.low) and iv.hi == pytest.approx(ref.high)
    assert I.decide_interval(iv) == "reproduced"


def test_a_seed_whose_fronts_do_not_meet_is_left_out():
    a = pd.concat([_front(0, [0.05, 0.10], [0.9, 0.9]), _front(1, [0.40, 0.50], [0.9, 0.9])])
    b = pd.concat([_front(0, [0.05, 0.10], [0.8, 0.8]), _front(1, [0.05, 0.10], [0.8, 0.8])])
    iv, per_seed = I.front_gap_interval(a, b, min_coverage=0.5)
    assert list(per_seed["used"]) == [True, False] and iv.n == 1
    assert I.decide_interval(iv).startswith("inconclusive (1 seed < 3")


def test_missing_seed_column_is_refused():
    with pytest.raises(ValueError, match="no column 'random_state'"):
        I.per_seed_front_gaps(pd.DataFrame({"compression_ratio_target": [0.1], "accuracy": [0.5]}),
                              _front(0, [0.1], [0.5]))


@given(st.lists(st.floats(-0.1, 0.1, allow_nan=False), min_size=3, max_size=8))
def test_an_inconclusive_verdict_says_which_way_the_seeds_point(gaps: list[float]) -> None:
    """The counts and the mean in the text are those of the seeds the interval used (brute force below); a
    verdict that decides carries no direction text."""
    from study.verdicts import decide_over_seeds

    per_seed = pd.DataFrame({"seed": range(len(gaps)), "mean_gap": gaps, "used": True})
    verdict = decide_over_seeds(I.t_interval(gaps), per_seed)
    if not verdict.startswith("inconclusive"):
        assert "seeds point" not in verdict
        return
    up, down = sum(g > 0 for g in gaps), sum(g < 0 for g in gaps)
    assert f"seeds point {up} for, {down} against the paper" in verdict
    assert f"(mean {np.mean(gaps):+.4f})" in verdict


def test_a_coverage_verdict_counts_every_compared_seed() -> None:
    from study.verdicts import decide_over_seeds

    per_seed = pd.DataFrame({"seed": [0, 1, 2], "mean_gap": [-0.02, 0.01, -0.03], "used": False})
    verdict = decide_over_seeds(I.t_interval([]), per_seed)
    assert (verdict.startswith("inconclusive (coverage")
            and "seeds point 1 for, 2 against the paper (mean -0.0133)" in verdict)

"""Interval maths against values worked out by hand."""

import math

import numpy as np
import pytest

from duo_unlearn.stats import Estimate, bootstrap_mean, bootstrap_statistic, pooled_rate, rate, wilson


def test_wilson_matches_the_score_interval_worked_by_hand():
    """Wilson: centre (k + z²/2) / (n + z²), half-width z / (n + z²) · sqrt(k(n − k)/n + z²/4),
    z = 1.959964, z² = 3.841459.

    k = 9, n = 12: centre 10.920729 / 15.841459 = 0.689377; half 0.123723 · sqrt(2.25 + 0.960365)
    = 0.123723 · 1.791749 = 0.221681 -> [0.4677, 0.9111].
    k = 0, n = 12: centre 1.920729 / 15.841459 = 0.121247; half 0.123723 · 0.979982 = 0.121247
    -> [0, 0.2425] (not the zero-width [0, 0] of the normal approximation)."""
    e = wilson(9, 12)
    assert (e.value, e.k, e.n) == (0.75, 9, 12)
    assert e.low == pytest.approx(0.4677, abs=1e-4) and e.high == pytest.approx(0.9111, abs=1e-4)
    zero = wilson(0, 12)
    assert zero.low == pytest.approx(0.0, abs=1e-9) and zero.high == pytest.approx(0.2425, abs=1e-4)
    full = wilson(48, 48)  # mirror image of k = 0 at n = 48
    assert full.high == pytest.approx(1.0) and full.low == pytest.approx(1 - wilson(0, 48).high, abs=1e-12)


def test_rate_counts_hits_and_pooling_sums_counts():
    assert rate([True, False, True, True]) == wilson(3, 4)
    pooled = pooled_rate([wilson(3, 12), wilson(5, 12), wilson(12, 24)])
    assert (pooled.k, pooled.n) == (20, 48) and pooled == wilson(20, 48)
    with pytest.raises(ValueError, match="rates"):
        pooled_rate([bootstrap_mean([0.1, 0.2])])
    with pytest.raises(ValueError, match="n > 0"):
        wilson(0, 0)


def test_bootstrap_mean_of_four_values_by_hand():
    """Resamples of {0.7, 0.8, 0.9, 1.0} have means on the grid 0.7, 0.725, ..., 1.0; the 2.5 % and
    97.5 % quantiles of that distribution are 0.75 and 0.95 (the extreme means 0.7 and 1.0 each
    have probability 4^-4 = 0.4 %, the next ones 0.725 and 0.975 have 4 · 4^-4 = 1.6 %, so the
    cumulative 2.5 % point falls on 0.75)."""
    e = bootstrap_mean([0.9, 0.8, 1.0, 0.7])
    assert e.value == pytest.approx(0.85) and e.n == 4 and e.k is None
    assert e.low == pytest.approx(0.75) and e.high == pytest.approx(0.95)
    assert bootstrap_mean([0.9, 0.8, 1.0, 0.7]) == e  # seeded: the same interval every time
    assert bootstrap_mean([0.5] * 8) == Estimate(0.5, 0.5, 0.5, 8)


def test_bootstrap_statistic_brackets_the_statistic_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=(20, 2)), rng.normal(size=(2000, 2))

    def stat(x):
        return float(np.linalg.norm(x.mean(0)))

    a, b = bootstrap_statistic(stat, small), bootstrap_statistic(stat, large)
    assert a.low <= a.value <= a.high or math.isclose(a.low, a.value)
    assert (b.high - b.low) < (a.high - a.low) / 3  # ~1/sqrt(100) of the width


def test_estimate_round_trips_and_formats():
    e = wilson(9, 12)
    assert Estimate.from_dict(e.to_dict()) == e
    assert e.format() == "0.75 [0.47, 0.91] n=12"
    assert e.overlaps(wilson(12, 12)) and not wilson(0, 48).overlaps(wilson(48, 48))


def test_seed_mean_is_the_student_t_interval_worked_by_hand():
    """Seeds 1, 2, 3: mean 2, sd 1, t(0.975, 2 df) = 4.302653, half-width 4.302653 / sqrt(3) = 2.484138."""
    from duo_unlearn.stats import seed_mean

    e = seed_mean([1.0, 2.0, 3.0])
    assert (e.value, e.n, e.k) == (2.0, 3, None)
    assert e.low == pytest.approx(2 - 2.484138, abs=1e-5) and e.high == pytest.approx(2 + 2.484138, abs=1e-5)
    assert seed_mean([0.7]) == Estimate(0.7, 0.7, 0.7, 1)


def test_across_seeds_is_the_t_interval_of_the_seed_rates_clipped_to_0_1():
    """(0.2, 0.4, 0.6): mean 0.4, sd 0.2, se 0.2/sqrt(3) = 0.11547, t(0.975, 2) = 4.3027,
    half-width 0.49683: [-0.0968, 0.8968], clipped below at 0."""
    from duo_unlearn.stats import across_seeds

    e = across_seeds([0.2, 0.4, 0.6])
    assert (e.value, e.n, e.k) == (pytest.approx(0.4), 3, None)
    assert e.low == 0.0 and e.high == pytest.approx(0.8968, abs=1e-4)
    assert across_seeds([1.0, 1.0, 1.0]) == Estimate(1.0, 1.0, 1.0, 3)  # no spread: the point...
    # ...unless given the pooled Wilson interval, which it never undercuts (48 / 48 on each of 3 seeds)
    floor = wilson(144, 144)
    assert across_seeds([1.0, 1.0, 1.0], at_least=floor) == Estimate(1.0, floor.low, 1.0, 3)
    assert across_seeds([0.2, 0.4, 0.6], at_least=floor).low == 0.0  # a wider t interval stays as it is

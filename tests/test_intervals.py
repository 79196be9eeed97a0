"""Means with t-intervals, Welch's interval of a difference, pooled spread, seeds needed."""

import math

import pytest
from scipy import stats

from atto_detectron.analysis.intervals import (
    format_difference,
    format_interval,
    mean_interval,
    pooled_std,
    seeds_needed,
    std_interval,
    welch_half_width,
    welch_interval,
)


def test_mean_interval_is_students_t_interval():
    values = [60.0, 62.0, 57.0, 61.0]
    result = mean_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=60.0, scale=stats.sem(values))
    assert result["mean"] == 60.0
    assert result["low"] == pytest.approx(low) and result["high"] == pytest.approx(high)
    assert result["std"] == pytest.approx(math.sqrt(14 / 3))
    one = mean_interval([58.0])
    assert one["low"] is None and one["half_width"] is None and one["std"] == 0.0
    assert format_interval(one) == "58.0"
    assert format_interval(result) == f"60.0 [{low:.1f}, {high:.1f}]"


def test_welch_interval_matches_scipy():
    a, b = [61.0, 63.5, 60.2, 62.8, 61.9], [58.3, 60.1, 57.0]
    ours = welch_interval(a, b)
    theirs = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert ours["low"] == pytest.approx(theirs.low)
    assert ours["high"] == pytest.approx(theirs.high)
    assert ours["resolved"] and ours["difference"] > 0
    # Swapping the sides flips the sign and keeps the width.
    swapped = welch_interval(b, a)
    assert swapped["difference"] == pytest.approx(-ours["difference"])
    assert swapped["half_width"] == pytest.approx(ours["half_width"])
    assert welch_interval(a, [60.0]) is None


def test_an_interval_containing_zero_is_not_resolved():
    overlap = welch_interval([60.0, 64.0, 58.0], [61.0, 59.0, 62.0])
    assert overlap["low"] < 0 < overlap["high"]
    assert not overlap["resolved"]
    assert format_difference(overlap).endswith(", not resolved")
    assert format_difference(overlap).startswith(f"{overlap['difference']:+.1f} [")


def test_pooled_std_weighs_groups_by_their_degrees_of_freedom():
    groups = [[1.0, 3.0], [10.0, 10.0, 13.0], [5.0]]  # the single value adds nothing
    expected = math.sqrt((1 * 2.0 + 2 * 3.0) / 3)
    assert pooled_std(groups) == pytest.approx(expected)
    assert pooled_std([[4.0]]) is None


def test_seeds_needed_is_the_fewest_that_reach_the_half_width():
    n = seeds_needed(1.5, 2.5, minimum=2)
    assert welch_half_width(1.5, n, 1.5, n) <= 2.5 < welch_half_width(1.5, n - 1, 1.5, n - 1)
    assert n == 5
    assert seeds_needed(1.5, 2.5, minimum=7) == 7
    assert seeds_needed(0.5, 2.5, minimum=3) == 3
    assert seeds_needed(3.7, 2.5) > seeds_needed(1.5, 2.5)
    with pytest.raises(ValueError, match="needs more than 4 seeds"):
        seeds_needed(5.0, 1.0, maximum=4)


def test_a_spread_from_four_seeds_is_itself_uncertain():
    low, high = std_interval(2.0, 3)
    assert low == pytest.approx(2.0 * math.sqrt(3 / stats.chi2.ppf(0.975, 3)))
    assert 0.56 < low / 2.0 < 0.58 and 3.6 < high / 2.0 < 3.8
    narrow = std_interval(2.0, 30)
    assert low < narrow[0] < 2.0 < narrow[1] < high
    assert std_interval(2.0, 0) is None

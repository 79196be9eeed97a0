"""
Means over seeds with 95% intervals, differences between two models with Welch's
interval, the pooled seed spread, and how many seeds an interval of a given width needs.

Every accuracy comparison of the project is one of these: a difference counts as
resolved only when its interval excludes zero.
"""

import math
import statistics
from typing import Dict, Optional, Sequence

from scipy import stats

__all__ = [
    "CONFIDENCE",
    "mean_interval",
    "std_interval",
    "welch_interval",
    "pooled_std",
    "welch_half_width",
    "seeds_needed",
    "format_interval",
    "format_difference",
]

CONFIDENCE = 0.95


def _t(df: float, confidence: float) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Dict:
    """
    Mean of ``values`` (one per seed) with its Student-t interval.

    Returns:
        dict: ``mean``, ``std`` (sample standard deviation), ``n``, ``low``, ``high`` and
        ``half_width``; the interval is None for fewer than two values.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no values")
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = _t(n - 1, confidence) * std / math.sqrt(n) if n > 1 else None
    return {
        "mean": mean,
        "std": std,
        "n": n,
        "min": min(values),
        "max": max(values),
        "half_width": half,
        "low": mean - half if half is not None else None,
        "high": mean + half if half is not None else None,
    }


def std_interval(std: float, dof: int, confidence: float = CONFIDENCE):
    """
    The chi-square interval of a standard deviation estimated with ``dof`` degrees of
    freedom (n - 1 for one sample; the sum of n_i - 1 when pooled): ``(low, high)``, or
    None without any degree of freedom. With 3 (four seeds) it spans 0.57x to 3.7x the
    estimate: spreads measured on a few seeds are themselves uncertain.
    """
    if dof < 1:
        return None
    low = std * math.sqrt(dof / stats.chi2.ppf(0.5 + confidence / 2, dof))
    high = std * math.sqrt(dof / stats.chi2.ppf(0.5 - confidence / 2, dof))
    return low, high


def welch_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> Optional[Dict]:
    """
    The difference of means ``mean(a) - mean(b)`` with Welch's interval (unequal
    variances, Welch-Satterthwaite degrees of freedom).

    Returns:
        dict: ``difference``, ``low``, ``high``, ``half_width``, ``df``, ``n_a``, ``n_b``
        and ``resolved`` (the interval excludes 0); None when either side has fewer than
        two values. Where both sides have no spread at all, the interval is the point.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    var_a, var_b = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(var_a + var_b)
    if se == 0:
        half, df = 0.0, float(len(a) + len(b) - 2)
    else:
        df = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
        half = _t(df, confidence) * se
    difference = mean_a - mean_b
    low, high = difference - half, difference + half
    return {
        "difference": difference,
        "low": low,
        "high": high,
        "half_width": half,
        "df": df,
        "n_a": len(a),
        "n_b": len(b),
        "resolved": low > 0 or high < 0,
    }


def pooled_std(groups: Sequence[Sequence[float]]) -> Optional[float]:
    """
    The pooled sample standard deviation of several groups (one per model), each about
    its own mean: ``sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1))``; None without a group of
    two or more values.
    """
    groups = [list(g) for g in groups if len(g) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    if not dof:
        return None
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups) / dof)


def welch_half_width(
    std_a: float, n_a: int, std_b: float, n_b: int, confidence: float = CONFIDENCE
) -> float:
    """The half-width Welch's interval has for these spreads and seed counts."""
    var_a, var_b = std_a**2 / n_a, std_b**2 / n_b
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return 0.0
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    return _t(df, confidence) * se


def seeds_needed(
    std: float, half_width: float, minimum: int = 2, maximum: int = 50, other_n: int = None
) -> int:
    """
    The fewest seeds per model (at least ``minimum``) for which Welch's interval of a
    difference between two models, each with spread ``std``, is at most ``half_width``
    wide on each side; with ``other_n``, the other model keeps that many seeds.

    Raises:
        ValueError: not reachable with ``maximum`` seeds.
    """
    for n in range(max(2, minimum), maximum + 1):
        if welch_half_width(std, n, std, other_n or n) <= half_width:
            return n
    raise ValueError(
        f"A {CONFIDENCE:.0%} interval of +-{half_width} with a seed spread of {std:.2f} "
        f"needs more than {maximum} seeds."
    )


def format_interval(stats_: Dict, digits: int = 1) -> str:
    """``"60.3 [58.1, 62.5]"`` from :func:`mean_interval`; the mean alone for one seed."""
    if stats_.get("low") is None:
        return f"{stats_['mean']:.{digits}f}"
    return f"{stats_['mean']:.{digits}f} [{stats_['low']:.{digits}f}, {stats_['high']:.{digits}f}]"


def format_difference(interval: Dict, digits: int = 1) -> str:
    """``"+1.2 [-1.1, +3.5], not resolved"`` from :func:`welch_interval`."""
    verdict = "resolved" if interval["resolved"] else "not resolved"
    return (
        f"{interval['difference']:+.{digits}f} [{interval['low']:+.{digits}f}, "
        f"{interval['high']:+.{digits}f}], {verdict}"
    )

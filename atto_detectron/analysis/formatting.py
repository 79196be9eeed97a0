"""How every report, table and log line of the project writes its numbers."""

import math
from typing import Optional

__all__ = ["format_number", "format_ratio", "MISSING"]

# What a table shows where a figure is absent (not measured, not applicable).
MISSING = "-"


def format_number(
    value: Optional[float],
    scale: float = 1.0,
    digits: int = 1,
    unit: str = "",
    missing: str = MISSING,
) -> str:
    """
    ``value / scale`` with ``digits`` decimals and an optional unit, e.g.
    ``format_number(6.66e6, 1e6, 2, "M")`` -> "6.66M"; ``missing`` for None or NaN.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return f"{value / scale:.{digits}f}{unit}"


def format_ratio(value: Optional[float], digits: int = 2, missing: str = MISSING) -> str:
    """A ratio such as a speed-up: "4.21x"; ``missing`` for None or NaN."""
    return format_number(value, 1.0, digits, "x", missing)

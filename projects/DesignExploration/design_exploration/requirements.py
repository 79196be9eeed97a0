"""Design requirements as data, and the indicator function 1_r(.) of the paper's Eq. 1.

A requirements file (yaml or json) has any of these keys; an absent or null key is no
requirement::

    min_accuracy: 60.0       # percent on the validation set: top-1 (classification)
                             # or box AP50 (detection)
    max_params: 250K         # parameters of the whole model
    max_mult_adds: 1.2M      # mult-adds of one forward pass at the task's input size
    max_latency_ms: 5.0      # median forward time of one image, measured on this machine

Counts take a plain number (``300000``, ``3e5``) or one with a K, M or G suffix.
"""

import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, Mapping, Optional, Union

import yaml

__all__ = ["DesignRequirements", "load_requirements", "parse_count"]

_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_count(value: Union[int, float, str], name: str = "value") -> float:
    """
    A count given as a number or as a string with an optional K/M/G suffix ("250K",
    "1.2M", "3e5").

    Raises:
        ValueError: naming ``name`` when it is neither.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(value))
    if not match:
        raise ValueError(
            f"{name}: expected a number, optionally with a K, M or G suffix (e.g. 250K, "
            f"1.2M); got {value!r}"
        )
    return float(match.group(1)) * _SUFFIXES[match.group(2).upper()]


@dataclass(frozen=True)
class DesignRequirements:
    """
    Human-specified requirements. None means "no requirement".

    Attributes:
        min_accuracy: the indicator's accuracy floor, in percent, on the validation set.
        max_params: parameter budget.
        max_mult_adds: mult-add budget at the task's input size.
        max_latency_ms: latency budget, median of single-image forward passes here.
    """

    min_accuracy: Optional[float] = None
    max_params: Optional[float] = None
    max_mult_adds: Optional[float] = None
    max_latency_ms: Optional[float] = None

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                value = parse_count(value, f.name)
                if not (math.isfinite(value) and value >= 0):
                    raise ValueError(f"{f.name} must be a finite number >= 0; got {value}")
                object.__setattr__(self, f.name, value)

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "requirements") -> "DesignRequirements":
        """
        Raises:
            ValueError: naming ``source`` and the key, for unknown keys or bad values.
        """
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping of requirements, got {data!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown requirement(s) {unknown}; known: {known}")
        try:
            return cls(**dict(data))
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e

    def to_dict(self) -> Dict:
        return asdict(self)

    def updated(self, **overrides) -> "DesignRequirements":
        """A copy with the given requirements replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def needs_latency(self) -> bool:
        return self.max_latency_ms is not None

    def budget_ratios(self, params: float, mult_adds: float) -> Dict[str, float]:
        """value / budget of each complexity budget that is set (> 1: over budget)."""
        ratios = {}
        if self.max_params is not None:
            ratios["max_params"] = params / max(self.max_params, 1e-12)
        if self.max_mult_adds is not None:
            ratios["max_mult_adds"] = mult_adds / max(self.max_mult_adds, 1e-12)
        return ratios

    def check(self, record: Mapping) -> Dict[str, bool]:
        """
        Args:
            record: "accuracy" (percent), "params", "mult_adds" and, with a latency
                budget, "latency_ms".

        Returns:
            dict: each requirement that is set -> whether ``record`` meets it.
        """
        met = {}
        if self.min_accuracy is not None:
            met["min_accuracy"] = record["accuracy"] >= self.min_accuracy
        for key, ratio in self.budget_ratios(record["params"], record["mult_adds"]).items():
            met[key] = ratio <= 1.0
        if self.max_latency_ms is not None:
            met["max_latency_ms"] = record["latency_ms"] <= self.max_latency_ms
        return met

    def violation(self, record: Mapping) -> float:
        """
        How far ``record`` is from meeting the requirements: the sum of the relative
        shortfalls (accuracy) and excesses (budgets); 0 when all are met.
        """
        total = 0.0
        if self.min_accuracy is not None and self.min_accuracy > 0:
            total += max(0.0, (self.min_accuracy - record["accuracy"]) / self.min_accuracy)
        for ratio in self.budget_ratios(record["params"], record["mult_adds"]).values():
            total += max(0.0, ratio - 1.0)
        if self.max_latency_ms is not None and self.max_latency_ms > 0:
            total += max(0.0, record["latency_ms"] / self.max_latency_ms - 1.0)
        return total

    def indicator(self, record: Mapping) -> bool:
        """1_r(N) of Eq. 1: True when every requirement holds."""
        return all(self.check(record).values())


def load_requirements(path: str) -> DesignRequirements:
    """
    Reads a requirements file (yaml or json; see the module docstring).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming ``path``, when it is not a valid requirements file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Requirements file {path!r} does not exist. Write a yaml/json file with any of "
            f"min_accuracy, max_params, max_mult_adds, max_latency_ms (see "
            f"projects/DesignExploration/configs/), or give them as flags."
        )
    try:
        with open(path) as f:
            data = json.load(f) if path.lower().endswith(".json") else yaml.safe_load(f)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot parse the requirements file: {e}") from e
    if isinstance(data, Mapping) and "requirements" in data:
        data = data["requirements"]
    return DesignRequirements.from_dict(data, source=path)

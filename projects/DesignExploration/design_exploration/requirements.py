"""Design requirements as data, and the indicator function 1_r(.) of the paper's Eq. 1.

A requirements file (yaml or json) has any of these keys; an absent or null key is no
requirement::

    min_accuracy: 60.0       # percent on the validation set: top-1 (classification)
                             # or box AP50 (detection)
    min_mask_accuracy: 55.0  # percent: mask AP50 (detection with masks)
    max_params: 250K         # parameters of the whole model
    max_mult_adds: 1.2M      # mult-adds of one forward pass at the task's input size
    max_latency_ms: 5.0      # median inference time of one image, measured on this machine
                             # in every latency engine (see design_exploration.latency);
                             # or per engine: {pytorch: 650, openvino-int8: 370}
    objective: netscore      # what ranks the candidates that meet them: netscore or latency
                             # (see design_exploration.objective)

Counts take a plain number (``300000``, ``3e5``) or one with a K, M or G suffix.

Any requirement can instead be relative to a peer model (detection only)::

    max_latency_ms: {of: ShuffleNetV2-FPN}              # at most ShuffleNetV2-FPN's latency
    min_accuracy: {of: MobileNetV2-FPN}                 # at least its box AP50
    min_mask_accuracy: {of: MobileNetV2-FPN}            # and its mask AP50
    max_params: {of: MobileNetV2-FPN, times: 0.5}       # at most half its parameters

A latency requirement relative to a peer holds in each engine the search measures
latency in (``--latency-engine pytorch openvino-int8``): at most the peer's latency in
that engine.

A peer is a Mask R-CNN of the plugin with another backbone (:data:`PEER_NAMES`; see
:mod:`~design_exploration.peers`). The search measures each peer that the requirements
name once, at its start: its accuracy on the prototype's schedule, seed and data order,
its parameters and mult-adds, its latency as the candidates' (see
:class:`~design_exploration.explorer.DesignExplorer`).
"""

import json
import math
import os
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, List, Mapping, Union

import yaml

from .objective import OBJECTIVES
from .peers import PEER_NAMES
from .settings import LATENCY_ENGINES

__all__ = ["PeerReference", "DesignRequirements", "load_requirements", "parse_count"]

_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}

# Requirement -> the figure of a peer that a relative requirement takes.
PEER_FIGURES = {
    "min_accuracy": "accuracy",
    "min_mask_accuracy": "mask_accuracy",
    "max_params": "params",
    "max_mult_adds": "mult_adds",
    "max_latency_ms": "latency_ms",
}


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
class PeerReference:
    """
    A requirement relative to a peer: ``times`` x the peer's figure (see the module
    docstring). Written ``{of: NAME}`` or ``{of: NAME, times: FACTOR}``.
    """

    of: str
    times: float = 1.0

    @classmethod
    def parse(cls, value: Mapping, name: str) -> "PeerReference":
        """
        Raises:
            ValueError: naming ``name`` (the requirement) and the known peers.
        """
        unknown = sorted(set(value) - {"of", "times"})
        if unknown or "of" not in value:
            raise ValueError(
                f"{name}: a requirement relative to a peer is {{of: NAME}} or {{of: NAME, "
                f"times: FACTOR}}; got {dict(value)!r}"
            )
        peer = value["of"]
        if peer not in PEER_NAMES:
            raise ValueError(f"{name}: unknown peer {peer!r}; known peers: {', '.join(PEER_NAMES)}")
        times = value.get("times", 1.0)
        if isinstance(times, bool) or not isinstance(times, (int, float)):
            raise ValueError(f"{name}: times must be a number; got {times!r}")
        if not (math.isfinite(times) and times > 0):
            raise ValueError(f"{name}: times must be a finite number > 0; got {times}")
        return cls(of=peer, times=float(times))

    def to_dict(self) -> Dict:
        return {"of": self.of} if self.times == 1.0 else {"of": self.of, "times": self.times}

    def __str__(self):
        return self.of if self.times == 1.0 else f"{self.times:g} x {self.of}"


@dataclass(frozen=True)
class DesignRequirements:
    """
    Human-specified requirements. None means "no requirement"; a :class:`PeerReference`
    is relative to a peer, and :meth:`resolved` turns it into a number once the peer is
    measured.

    Attributes:
        min_accuracy: the indicator's accuracy floor, in percent, on the validation set.
        min_mask_accuracy: the floor of mask AP50, in percent (detection with masks).
        max_params: parameter budget.
        max_mult_adds: mult-add budget at the task's input size.
        max_latency_ms: latency budget, median of single-image inferences here: one
            number for every engine latency is measured in, or engine -> budget.
        objective: "netscore" or "latency": what ranks the candidates (see
            :mod:`~design_exploration.objective`).
    """

    min_accuracy: Union[None, float, PeerReference] = None
    min_mask_accuracy: Union[None, float, PeerReference] = None
    max_params: Union[None, float, PeerReference] = None
    max_mult_adds: Union[None, float, PeerReference] = None
    max_latency_ms: Union[None, float, PeerReference, Dict[str, float]] = None
    objective: str = "netscore"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}; got {self.objective!r}")
        for name in PEER_FIGURES:
            value = getattr(self, name)
            if name == "max_latency_ms" and isinstance(value, Mapping) and "of" not in value:
                value = _engine_budgets(value, name)
            elif isinstance(value, Mapping):
                value = PeerReference.parse(value, name)
            elif value is not None and not isinstance(value, PeerReference):
                value = parse_count(value, name)
                if not (math.isfinite(value) and value >= 0):
                    raise ValueError(f"{name} must be a finite number >= 0; got {value}")
            object.__setattr__(self, name, value)

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
        data = dict(data)
        if data.get("objective", "netscore") is None:
            del data["objective"]
        try:
            return cls(**data)
        except ValueError as e:
            raise ValueError(f"{source}: {e}") from e

    def to_dict(self) -> Dict:
        """The JSON form: numbers, and ``{"of": NAME}`` for requirements relative to a peer."""
        data = asdict(self)
        for name in PEER_FIGURES:
            value = getattr(self, name)
            if isinstance(value, PeerReference):
                data[name] = value.to_dict()
        return data

    def updated(self, **overrides) -> "DesignRequirements":
        """A copy with the given requirements replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def needs_latency(self) -> bool:
        """Whether candidates' latencies are needed (a latency budget or objective)."""
        return self.max_latency_ms is not None or self.objective == "latency"

    def peer_references(self) -> Dict[str, PeerReference]:
        """Each requirement that is relative to a peer -> its reference."""
        return {
            name: getattr(self, name)
            for name in PEER_FIGURES
            if isinstance(getattr(self, name), PeerReference)
        }

    def peer_names(self) -> List[str]:
        """The peers that the requirements name, in :data:`PEER_NAMES` order."""
        named = {reference.of for reference in self.peer_references().values()}
        return [name for name in PEER_NAMES if name in named]

    def peer_figures(self, peer: str) -> List[str]:
        """The figures of ``peer`` that the requirements need ("accuracy", ...)."""
        return [
            PEER_FIGURES[name]
            for name, reference in self.peer_references().items()
            if reference.of == peer
        ]

    def resolved(self, peers: Mapping[str, Mapping]) -> "DesignRequirements":
        """
        These requirements with each peer reference replaced by ``times`` x the peer's
        figure; a latency budget by engine -> ``times`` x the peer's latency in it where
        the peer's latency is measured in more than one engine.

        Args:
            peers: peer name -> its figures ("accuracy", "params", "mult_adds",
                "latency_ms", "latencies_ms"), e.g. the search state's peer records'
                ``figures()``.

        Raises:
            ValueError: when a named peer or the figure it needs is missing.
        """
        values = {}
        for name, reference in self.peer_references().items():
            figures = peers.get(reference.of, {})
            figure = figures.get(PEER_FIGURES[name])
            if figure is None:
                raise ValueError(
                    f"{name} is relative to {reference.of}, whose "
                    f"{PEER_FIGURES[name]} is not measured yet"
                )
            values[name] = reference.times * float(figure)
            by_engine = figures.get("latencies_ms") or {}
            if name == "max_latency_ms" and len(by_engine) > 1:
                values[name] = {e: reference.times * float(ms) for e, ms in by_engine.items()}
        return replace(self, **values)

    def _numbers(self) -> None:
        if self.peer_references():
            raise ValueError(
                f"requirements relative to peers ({', '.join(self.peer_names())}) must be "
                f"resolved with the peers' figures first (DesignRequirements.resolved)"
            )

    def budget_ratios(self, params: float, mult_adds: float) -> Dict[str, float]:
        """value / budget of each complexity budget that is set (> 1: over budget)."""
        self._numbers()
        ratios = {}
        if self.max_params is not None:
            ratios["max_params"] = params / max(self.max_params, 1e-12)
        if self.max_mult_adds is not None:
            ratios["max_mult_adds"] = mult_adds / max(self.max_mult_adds, 1e-12)
        return ratios

    def latency_ratios(self, record: Mapping) -> Dict[str, float]:
        """
        Engine -> latency / budget in it (> 1: over budget); empty without a latency
        budget.

        Args:
            record: "latencies_ms" (engine -> ms) or, measured in one engine,
                "latency_ms" (as e.g. a classifier's figures).

        Raises:
            ValueError: when the budget names an engine the record has no latency in.
        """
        self._numbers()
        budget = self.max_latency_ms
        if budget is None:
            return {}
        measured = dict(record.get("latencies_ms") or {}) or {"": record["latency_ms"]}
        if not isinstance(budget, Mapping):
            return {e: ms / max(budget, 1e-12) for e, ms in measured.items()}
        missing = sorted(set(budget) - set(measured))
        if missing:
            raise ValueError(
                f"max_latency_ms has a budget in {', '.join(missing)}, where no latency is "
                f"measured: add the engine to --latency-engine"
            )
        return {e: measured[e] / max(ms, 1e-12) for e, ms in budget.items()}

    def check(self, record: Mapping) -> Dict[str, bool]:
        """
        Args:
            record: "accuracy" (percent), "params", "mult_adds" and, with a latency
                budget, "latency_ms" or "latencies_ms" (:meth:`latency_ratios`); with a
                mask floor, "mask_accuracy" (percent).

        Returns:
            dict: each requirement that is set -> whether ``record`` meets it.
        """
        self._numbers()
        met = {}
        if self.min_accuracy is not None:
            met["min_accuracy"] = record["accuracy"] >= self.min_accuracy
        if self.min_mask_accuracy is not None:
            met["min_mask_accuracy"] = _mask_accuracy(record) >= self.min_mask_accuracy
        for key, ratio in self.budget_ratios(record["params"], record["mult_adds"]).items():
            met[key] = ratio <= 1.0
        if self.max_latency_ms is not None:
            met["max_latency_ms"] = all(r <= 1.0 for r in self.latency_ratios(record).values())
        return met

    def violation(self, record: Mapping) -> float:
        """
        How far ``record`` is from meeting the requirements: the sum of the relative
        shortfalls (accuracy) and excesses (budgets); 0 when all are met.
        """
        self._numbers()
        total = 0.0
        if self.min_accuracy is not None and self.min_accuracy > 0:
            total += max(0.0, (self.min_accuracy - record["accuracy"]) / self.min_accuracy)
        if self.min_mask_accuracy is not None and self.min_mask_accuracy > 0:
            shortfall = self.min_mask_accuracy - _mask_accuracy(record)
            total += max(0.0, shortfall / self.min_mask_accuracy)
        for ratio in self.budget_ratios(record["params"], record["mult_adds"]).values():
            total += max(0.0, ratio - 1.0)
        for ratio in self.latency_ratios(record).values():
            total += max(0.0, ratio - 1.0)
        return total

    def indicator(self, record: Mapping) -> bool:
        """1_r(N) of Eq. 1: True when every requirement holds."""
        return all(self.check(record).values())


def _engine_budgets(value: Mapping, name: str) -> Dict[str, float]:
    """A latency budget per engine ``{ENGINE: ms, ...}``, checked."""
    unknown = sorted(set(value) - set(LATENCY_ENGINES))
    if unknown or not value:
        raise ValueError(
            f"{name}: a budget per engine maps engines ({', '.join(LATENCY_ENGINES)}) to "
            f"milliseconds, and a requirement relative to a peer is {{of: NAME}}; got "
            f"{dict(value)!r}"
        )
    budgets = {}
    for engine, ms in value.items():
        ms = parse_count(ms, f"{name} in {engine}")
        if not (math.isfinite(ms) and ms >= 0):
            raise ValueError(f"{name} in {engine} must be a finite number >= 0; got {ms}")
        budgets[engine] = ms
    return budgets


def _mask_accuracy(record: Mapping) -> float:
    # A mask floor on a network without masks (classification) is a mistake, not a miss.
    value = record.get("mask_accuracy")
    if value is None:
        raise ValueError("min_mask_accuracy needs mask AP50: set it for detection with masks only")
    return value


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
            f"min_accuracy, min_mask_accuracy, max_params, max_mult_adds, max_latency_ms, "
            f"objective (see "
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

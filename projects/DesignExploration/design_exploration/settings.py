"""The explorer's settings (latency measurement included) and its search budget."""

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .generator import GeneratorSettings

__all__ = ["LATENCY_ENGINES", "LatencySettings", "SearchBudget", "parse_budget", "ExplorerSettings"]

# How latency is measured (see :mod:`~design_exploration.latency`): PyTorch eager, or the
# plugin's ONNX export run by OpenVINO's CPU plugin, in fp32 or quantized to INT8.
LATENCY_ENGINES = ("pytorch", "openvino", "openvino-int8")


@dataclass(frozen=True)
class SearchBudget:
    """Stop starting candidates after ``candidates`` of them, or after ``minutes``."""

    candidates: Optional[int] = None
    minutes: Optional[float] = None

    def __post_init__(self):
        if (self.candidates is None) == (self.minutes is None):
            raise ValueError("a budget is a number of candidates or a number of minutes")
        if (self.candidates is not None and self.candidates < 0) or (
            self.minutes is not None and self.minutes < 0
        ):
            raise ValueError(f"a budget cannot be negative: {self}")

    def exhausted(self, candidates: int, seconds: float) -> bool:
        if self.candidates is not None:
            return candidates >= self.candidates
        return seconds >= 60.0 * self.minutes

    def __str__(self):
        if self.candidates is not None:
            return f"{self.candidates} candidates"
        return f"{self.minutes:g} minutes"


def parse_budget(text: str) -> SearchBudget:
    """ "12" -> 12 candidates; "30m", "30min" -> 30 minutes; "2h" -> 120 minutes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*(m|min|h)?\s*", str(text))
    if not match:
        raise ValueError(
            f"budget {text!r}: give a number of candidates (e.g. 12) or of minutes (e.g. 30m, 2h)"
        )
    value, unit = match.groups()
    if unit is None:
        if "." in value:
            raise ValueError(f"budget {text!r}: a number of candidates must be an integer")
        return SearchBudget(candidates=int(value))
    return SearchBudget(minutes=float(value) * (60.0 if unit == "h" else 1.0))


@dataclass(frozen=True)
class LatencySettings:
    """
    How latencies are measured: the median of ``runs`` timed single-image inferences after
    ``warmup`` untimed ones, on ``threads`` CPU threads, in ``engine`` (one of
    :data:`LATENCY_ENGINES`; classification measures in "pytorch" only). Part of the
    search's settings, so a resumed search measures as the killed one did.

    ``check_engines``: more engines to measure in. The objective takes ``engine``'s
    latency; a latency budget must hold in every engine (:attr:`engines`), e.g. eager
    PyTorch and OpenVINO INT8 for a network that must be fast in both.

    Detection measures at the search config's operating point unless these give another
    (0: the config's): ``min_size_test``, ``max_size_test`` (``INPUT.MIN/MAX_SIZE_TEST``),
    ``proposals`` (``MODEL.RPN.POST_NMS_TOPK_TEST``), ``detections``
    (``TEST.DETECTIONS_PER_IMAGE``), e.g. a VOC config's 800 / 1333 / 1000 / 100 while
    the accuracy is measured on small generated images.
    """

    engine: str = "pytorch"
    runs: int = 20
    warmup: int = 3
    threads: int = 1
    min_size_test: int = 0
    max_size_test: int = 0
    proposals: int = 0
    detections: int = 0
    check_engines: Tuple[str, ...] = ()

    # The config keys of the operating point, in the order of the fields above.
    OPERATING_POINT_KEYS = (
        ("min_size_test", "INPUT.MIN_SIZE_TEST"),
        ("max_size_test", "INPUT.MAX_SIZE_TEST"),
        ("proposals", "MODEL.RPN.POST_NMS_TOPK_TEST"),
        ("detections", "TEST.DETECTIONS_PER_IMAGE"),
    )

    def operating_point_opts(self) -> List:
        """``[KEY, value, ...]`` of the operating point fields that are set."""
        opts = []
        for field_name, key in self.OPERATING_POINT_KEYS:
            if getattr(self, field_name):
                opts += [key, getattr(self, field_name)]
        return opts

    @classmethod
    def operating_point_of(cls, cfg) -> Dict[str, int]:
        """The operating point fields of a Detectron2 config (for ``--latency-at``)."""
        values = {}
        for field_name, key in cls.OPERATING_POINT_KEYS:
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            values[field_name] = int(node)
        return values

    @property
    def engines(self) -> Tuple[str, ...]:
        """Every engine latencies are measured in, the objective's first."""
        return (self.engine,) + self.check_engines

    def in_engine(self, engine: str) -> "LatencySettings":
        """These settings for one measurement in ``engine`` (no check engines)."""
        return replace(self, engine=engine, check_engines=())

    def __post_init__(self):
        # A JSON list (a saved state) or a tuple.
        object.__setattr__(self, "check_engines", tuple(self.check_engines))
        for engine in self.engines:
            if engine not in LATENCY_ENGINES:
                raise ValueError(f"latency engine must be one of {LATENCY_ENGINES}; got {engine!r}")
        if len(set(self.engines)) != len(self.engines):
            raise ValueError(f"latency engines must differ; got {list(self.engines)}")
        if self.runs < 1 or self.warmup < 0 or self.threads < 1:
            raise ValueError(
                f"latency runs and threads must be at least 1 and warmup at least 0; got "
                f"runs={self.runs}, warmup={self.warmup}, threads={self.threads}"
            )


@dataclass(frozen=True)
class ExplorerSettings:
    """
    Attributes:
        population: candidates per generator.
        num_elite: how many of the best candidates so far steer the next generator and
            serve as parents.
        seed: seeds every random draw (with the candidate's id).
        retrain: retrain the family from scratch at the end (see
            :mod:`~design_exploration.explorer`).
        name_prefix: family members are named "<prefix>-G<k>" after their generator.
        max_draws: samples drawn from the generator for one candidate until one meets
            the parameter and mult-add budgets.
        max_repairs: times the last draw, still over budget, is scaled down before it is
            evaluated anyway (and then fails the indicator).
        generator: see :class:`~design_exploration.generator.GeneratorSettings`.
        latency: how latencies are measured (:class:`LatencySettings`); used when a
            requirement or the objective needs latencies.
    """

    population: int = 4
    num_elite: int = 3
    seed: int = 0
    retrain: bool = True
    name_prefix: str = "AttoNet-X"
    max_draws: int = 10
    max_repairs: int = 8
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)

    def __post_init__(self):
        if self.population < 1 or self.num_elite < 1:
            raise ValueError("population and num_elite must be at least 1")

    def to_dict(self) -> Dict:
        """The JSON form (lists for tuples, as the state file reads back)."""
        data = asdict(self)
        data["latency"]["check_engines"] = list(self.latency.check_engines)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "ExplorerSettings":
        return cls(
            **dict(
                data,
                generator=GeneratorSettings(**data["generator"]),
                latency=LatencySettings(**data["latency"]),
            )
        )

    def seed_for(self, candidate_id: int) -> int:
        """The seed of every random draw for candidate ``candidate_id``."""
        return int(np.random.SeedSequence([self.seed, candidate_id]).generate_state(1)[0])

    @property
    def training_seed(self) -> int:
        """
        The seed of every training in the search (the prototype's, candidate 0's): one
        initialisation stream and one data order, so that accuracies are paired.
        """
        return self.seed_for(0)

    def member_name(self, generator: int) -> str:
        """The name of generator ``generator``'s family member."""
        return f"{self.name_prefix}-G{generator}"

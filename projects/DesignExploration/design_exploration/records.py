"""
The design search's state as typed records, and their JSON form.

:class:`SearchState` is what :class:`~design_exploration.explorer.DesignExplorer`
saves after every candidate and reloads to resume: the search's setup, its generators
(:class:`GeneratorRecord`), every candidate (:class:`CandidateRecord`; candidate 0 is the
prototype) and the family's final figures (:class:`RetrainedRecord`). Each record has
``to_dict()`` / ``from_dict()``; the JSON form is state file version
:data:`STATE_VERSION`, with one flat object per record, so the state file stays readable.
Files are read and written by :class:`~design_exploration.folder.SearchFolder`.

Version 2 added the peers that requirements are relative to (:class:`PeerRecord`,
measured once), the latency settings (in the settings), the objective (in the
requirements) and each figure's ``score`` under it; version 1 states are refused (the
figures of their candidates lack the score, and the search lacks the settings that a
resumed search must share). Version 3 added the search over depths and the detector's neck:
each generator's depth and neck choices, each candidate's neck, and the settings that open
them; version 2 states are refused (their settings lack those).
"""

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from atto_detectron.modeling import AttoNetSpec

from .evaluate import CandidateResult
from .neck import NeckGenome
from .objective import candidate_netscore, objective_score
from .peers import PeerRecord, mask_ap50
from .requirements import DesignRequirements
from .settings import ExplorerSettings
from .space import CellGenome

__all__ = [
    "STATE_VERSION",
    "Figures",
    "PeerRecord",
    "CandidateRecord",
    "GeneratorRecord",
    "RetrainedRecord",
    "SearchState",
]

STATE_VERSION = 3

_Record = TypeVar("_Record")


@dataclass
class Figures:
    """
    A network's measurements on the task and the requirements' verdict on them.

    Attributes:
        accuracy: percent on the validation set (top-1, or box AP50).
        params, mult_adds: of the whole model, at the task's input size.
        latency_ms: median single-image inference time in the latency settings' engine
            (the objective's); None when no budget needs it.
        netscore: NetScore (alpha 2, beta = gamma = 0.5); None at 0% accuracy.
        score: the requirements' objective (:func:`~design_exploration.objective.
            objective_score`; NetScore unless they chose another): what ranks candidates.
        met: each requirement that is set -> whether it holds.
        violation: how far the requirements are missed (0 when all are met).
        feasible: whether every requirement holds (the indicator function).
        metrics: the evaluator's full results (e.g. Detectron2's "bbox" dict); mask AP50
            is read from them (:attr:`mask_accuracy`).
        latencies_ms: each engine latency is measured in -> its latency (empty without
            latencies); a latency budget holds in each.
    """

    accuracy: float
    params: int
    mult_adds: int
    latency_ms: Optional[float]
    netscore: Optional[float]
    score: Optional[float]
    met: Dict[str, bool]
    violation: float
    feasible: bool
    metrics: Dict = field(default_factory=dict)
    latencies_ms: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def measure(cls, result: CandidateResult, requirements: DesignRequirements) -> "Figures":
        """
        The figures of one evaluation, judged by ``requirements`` (resolved: numbers
        only, see :meth:`SearchState.resolved_requirements`).
        """
        measured = {
            "accuracy": result.accuracy,
            "params": int(result.params),
            "mult_adds": int(result.mult_adds),
            "latency_ms": result.latency_ms,
            "latencies_ms": dict(result.latencies_ms),
        }
        # Mask AP50 is judged too; the figures keep it in the metrics (mask_accuracy).
        judged = dict(measured, mask_accuracy=mask_ap50(result.metrics))
        met = requirements.check(judged)
        violation = requirements.violation(judged)
        return cls(
            **measured,
            netscore=candidate_netscore(result.accuracy, result.params, result.mult_adds),
            score=objective_score(
                requirements.objective,
                result.accuracy,
                result.params,
                result.mult_adds,
                result.latency_ms,
            ),
            met=met,
            violation=violation,
            feasible=violation == 0 and all(met.values()),
            # As the state file will hold them (numpy and torch numbers become floats).
            metrics=json.loads(json.dumps(result.metrics, default=float)),
        )

    @property
    def mask_accuracy(self) -> Optional[float]:
        """Mask AP50 in percent (detection with masks), else None."""
        return mask_ap50(self.metrics)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Figures":
        """Reads the figures' keys of ``data`` (a record's flat JSON form)."""
        # latencies_ms is absent from states of searches measuring one engine before it.
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class CandidateRecord:
    """
    One evaluated network of the search; the prototype is candidate 0.

    Attributes:
        id: the candidate's number, in search order.
        name: its spec's name ("candidate-0007", or the prototype's).
        generator: k of the generator G_k that proposed it; None for the prototype.
        parent: the candidate whose weights it inherited; None for the prototype.
        draws, repairs: samples drawn and scalings applied until it met the budgets.
        schedule: "scratch" (the prototype) or "finetune".
        spec: the network.
        spec_file: its spec file, relative to the search's folder.
        weights: its weights file, relative to the search's folder; None once deleted
            (when it can no longer be a parent).
        figures: its measurements after training on ``schedule``.
        seconds: the time it took.
        neck: its detector's FPN (:class:`~design_exploration.neck.NeckGenome`); None for
            a classifier.
    """

    id: int
    name: str
    generator: Optional[int]
    parent: Optional[int]
    draws: int
    repairs: int
    schedule: str
    spec: AttoNetSpec
    spec_file: str
    weights: Optional[str]
    figures: Figures
    seconds: float
    neck: Optional[NeckGenome] = None

    def genome(self) -> CellGenome:
        """The candidate as a point of the search space."""
        return CellGenome.from_spec(self.spec, self.neck)

    def to_dict(self) -> Dict:
        """The flat JSON form: the fields above in order, the figures inlined."""
        data = {
            "id": self.id,
            "name": self.name,
            "generator": self.generator,
            "parent": self.parent,
            "draws": self.draws,
            "repairs": self.repairs,
            "schedule": self.schedule,
            "spec": self.spec.to_dict(),
            "spec_file": self.spec_file,
            "weights": self.weights,
        }
        data.update(self.figures.to_dict(), seconds=self.seconds)
        data["neck"] = None if self.neck is None else self.neck.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "CandidateRecord":
        special = ("spec", "figures", "neck")
        plain = {f.name: data[f.name] for f in fields(cls) if f.name not in special}
        neck = data.get("neck")
        return cls(
            **plain,
            spec=AttoNetSpec.from_dict(data["spec"]),
            figures=Figures.from_dict(data),
            neck=None if neck is None else NeckGenome.from_dict(neck),
        )


@dataclass
class GeneratorRecord:
    """
    Generator G_k of the search.

    Attributes:
        index: k.
        distribution: the generator's distribution
            (:meth:`~design_exploration.generator.CellGenerator.to_dict`).
        elite: ids of the candidates that steered it; its candidates' parents.
        first_candidate: the id of its first candidate.
    """

    index: int
    distribution: Dict
    elite: List[int]
    first_candidate: int

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "GeneratorRecord":
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass
class RetrainedRecord:
    """
    The final figures of a family member.

    Attributes:
        name: the member's name ("AttoNet-X-G2").
        schedule: "scratch" when retrained from scratch, "search" when the figures and
            weights are the candidate's from the search (no retraining).
        spec_file, weights: the member's files, relative to the search's folder.
        figures: its final measurements.
        seconds: the time its retraining took.
    """

    name: str
    schedule: str
    spec_file: str
    weights: str
    figures: Figures
    seconds: float

    def to_dict(self) -> Dict:
        """The flat JSON form, the figures inlined."""
        data = {"schedule": self.schedule}
        data.update(self.figures.to_dict())
        data.update(
            name=self.name, spec_file=self.spec_file, weights=self.weights, seconds=self.seconds
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "RetrainedRecord":
        plain = {f.name: data[f.name] for f in fields(cls) if f.name != "figures"}
        return cls(**plain, figures=Figures.from_dict(data))


def _record_dict(record, cls: Type[_Record]) -> Dict:
    # Callers written for the dict state may still append a record's JSON form: reading
    # it as a record checks it before it is saved.
    return (record if isinstance(record, cls) else cls.from_dict(record)).to_dict()


@dataclass
class SearchState:
    """
    Everything a design search saves, and all it needs to resume.

    The setup (``task`` .. ``prototype``) must be the same to resume a search; the rest
    grows as the search runs.

    Attributes:
        task: "classification" or "detection".
        accuracy_name: what the accuracy figures are ("top-1", "box AP50").
        input_size: (H, W) at which parameters and mult-adds are counted.
        settings: the explorer's settings.
        evaluation: the evaluator's settings (task-specific), in JSON form.
        requirements: the indicator function and the objective, as given (requirements
            relative to peers unresolved; see :meth:`resolved_requirements`).
        prototype: the human prototype.
        peers: peer name -> its measurements, for the peers that the requirements name
            (measured once, before the prototype).
        generators: G_0, G_1, ... so far.
        candidates: every candidate so far, the prototype first.
        retrained: candidate id -> the final figures of that family member.
        search_seconds: the time of the search (all runs together; no retraining).
    """

    task: str
    accuracy_name: str
    input_size: Tuple[int, int]
    settings: ExplorerSettings
    evaluation: Dict
    requirements: DesignRequirements
    prototype: AttoNetSpec
    peers: Dict[str, PeerRecord] = field(default_factory=dict)
    generators: List[GeneratorRecord] = field(default_factory=list)
    candidates: List[CandidateRecord] = field(default_factory=list)
    retrained: Dict[int, RetrainedRecord] = field(default_factory=dict)
    search_seconds: float = 0.0

    def __post_init__(self):
        self.input_size = tuple(self.input_size)
        # As the state file holds them (tuples become lists), so that a resumed search
        # compares equal to the one that was saved.
        self.evaluation = json.loads(json.dumps(self.evaluation))

    @property
    def prototype_record(self) -> Optional[CandidateRecord]:
        """Candidate 0, once the prototype is evaluated."""
        return self.candidates[0] if self.candidates else None

    def resolved_requirements(self) -> DesignRequirements:
        """
        The requirements with those relative to peers replaced by the peers' figures.

        Raises:
            ValueError: when a peer they name is not measured yet.
        """
        return self.requirements.resolved(
            {name: peer.figures() for name, peer in self.peers.items()}
        )

    def setup(self) -> Dict:
        """The setup in JSON form: what a resumed search must have in common with this."""
        return {
            "task": self.task,
            "accuracy_name": self.accuracy_name,
            "input_size": list(self.input_size),
            "settings": self.settings.to_dict(),
            "evaluation": copy.deepcopy(self.evaluation),
            "requirements": self.requirements.to_dict(),
            "prototype": self.prototype.to_dict(),
        }

    def relative_paths(self) -> List[str]:
        """Every file path the state names (relative to the search's folder)."""
        records = list(self.candidates) + list(self.retrained.values())
        return [
            path
            for record in records
            for path in (record.spec_file, record.weights)
            if path is not None
        ]

    def to_dict(self) -> Dict:
        """The JSON form (state file version :data:`STATE_VERSION`)."""
        data = {"version": STATE_VERSION}
        data.update(self.setup())
        data.update(
            peers={name: _record_dict(p, PeerRecord) for name, p in self.peers.items()},
            generators=[_record_dict(g, GeneratorRecord) for g in self.generators],
            candidates=[_record_dict(c, CandidateRecord) for c in self.candidates],
            # JSON object keys are strings.
            retrained={str(k): _record_dict(r, RetrainedRecord) for k, r in self.retrained.items()},
            search_seconds=self.search_seconds,
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "SearchState":
        """
        Raises:
            ValueError: for another state version.
            KeyError, TypeError, ValueError: when ``data`` is not a valid state.
        """
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"search state version {data.get('version')} is not supported: this "
                f"explorer reads version {STATE_VERSION} (version 2 added the peers, the "
                f"latency settings and the objective; version 3 the search over depths and "
                f"the detector's neck). Start the search again in a new --output."
            )
        return cls(
            task=data["task"],
            accuracy_name=data["accuracy_name"],
            input_size=data["input_size"],
            settings=ExplorerSettings.from_dict(data["settings"]),
            evaluation=data["evaluation"],
            requirements=DesignRequirements.from_dict(data["requirements"]),
            prototype=AttoNetSpec.from_dict(data["prototype"]),
            peers={name: PeerRecord.from_dict(p) for name, p in data["peers"].items()},
            generators=[GeneratorRecord.from_dict(g) for g in data["generators"]],
            candidates=[CandidateRecord.from_dict(c) for c in data["candidates"]],
            retrained={int(k): RetrainedRecord.from_dict(r) for k, r in data["retrained"].items()},
            search_seconds=data["search_seconds"],
        )

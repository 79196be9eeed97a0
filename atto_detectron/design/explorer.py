"""The machine-driven design explorer: successive generators of module cells.

The paper (Sec. 2.2) finds a generator G that maximises a performance function U (here
NetScore) over the networks it generates, subject to an indicator function 1_r (here
:class:`~atto_detectron.design.requirements.DesignRequirements`), by building successive
generators G_0, G_1, ... from a human prototype. Its generator (generative synthesis) is
not public. :class:`DesignExplorer` implements the following, simpler scheme for the same
problem:

1. The prototype is trained from scratch ("scratch" schedule) and measured: candidate 0.
2. G_0 is a :class:`~atto_detectron.design.generator.CellGenerator` centred on the
   prototype's cells. Generator k proposes ``population`` candidates. Each:

   * is sampled from G_k with a random generator seeded by (seed, candidate id);
   * must meet the parameter and mult-add budgets (counted with
     :mod:`atto_detectron.analysis`, before any training): samples over budget are drawn
     again, up to ``max_draws`` times, after which the last one has all its widths scaled
     down until it fits;
   * inherits the weights of its *parent*, the member of G_k's elite closest to it in
     log2 widths (:mod:`~atto_detectron.design.inherit`), and is fine-tuned briefly
     ("finetune" schedule), then tested on the validation set;
   * is ranked: candidates meeting every requirement by NetScore, then the others by
     how far they miss (:func:`~atto_detectron.design.objective.ranking_key`).

3. The elite is the ``num_elite`` best candidates so far; G_{k+1} moves G_k towards them
   (:meth:`~atto_detectron.design.generator.CellGenerator.updated`).
4. Generator k belongs to the sequence of successively better generators when its best
   candidate that meets the requirements has a higher NetScore than the prototype and
   every earlier generator in the sequence; that candidate joins the *family*, so the
   family's NetScores increase from member to member.
5. Each family member is then retrained from scratch on the prototype's schedule and
   seed, so that its accuracy owes nothing to its ancestors' training and compares
   fairly with the prototype's; the report gives both figures and which requirements
   hold for the retrained network.

The search state (settings, generators, every candidate's measurements, which weights are
kept) is written atomically to ``explore_state.json`` after every candidate, and the
candidates' weights next to it, so a killed search resumes at the candidate it was
evaluating; since every random draw is seeded by (seed, candidate id), the resumed search
gives the same candidates and figures as an uninterrupted one (except latencies). The
state's file paths are relative to the output folder and must stay inside it (a state
naming any other file is refused, and nothing is loaded or deleted); weights are read
with ``torch.load(weights_only=True)``, so a weights file cannot run code.
"""

import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..checkpoint import atomic_write, load_weights_file
from ..modeling import AttoNetSpec, save_attonet_spec
from .evaluate import CandidateEvaluator, CandidateResult
from .generator import CellGenerator, GeneratorSettings
from .inherit import inherit_weights
from .objective import candidate_netscore, ranking_key
from .requirements import DesignRequirements
from .space import CellGenome

__all__ = [
    "STATE_FILE",
    "SearchBudget",
    "parse_budget",
    "ExplorerSettings",
    "DesignExplorer",
    "derive_family",
    "load_state",
]

logger = logging.getLogger(__name__)

STATE_FILE = "explore_state.json"
STATE_VERSION = 1
# The keys of candidate and retrained records that hold paths, relative to the output
# folder; the explorer loads, copies and deletes the files they name.
_PATH_KEYS = ("weights", "spec_file")


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
            f"budget {text!r}: give a number of candidates (e.g. 12) or of minutes "
            f"(e.g. 30m, 2h)"
        )
    value, unit = match.groups()
    if unit is None:
        if "." in value:
            raise ValueError(f"budget {text!r}: a number of candidates must be an integer")
        return SearchBudget(candidates=int(value))
    return SearchBudget(minutes=float(value) * (60.0 if unit == "h" else 1.0))


@dataclass(frozen=True)
class ExplorerSettings:
    """
    Attributes:
        population: candidates per generator.
        num_elite: how many of the best candidates so far steer the next generator and
            serve as parents.
        seed: seeds every random draw (with the candidate's id).
        retrain: retrain the family from scratch at the end (see the module docstring).
        name_prefix: family members are named "<prefix>-G<k>" after their generator.
        max_draws: samples drawn from the generator for one candidate until one meets
            the parameter and mult-add budgets.
        max_repairs: times the last draw, still over budget, is scaled down before it is
            evaluated anyway (and then fails the indicator).
        generator: see :class:`~atto_detectron.design.generator.GeneratorSettings`.
    """

    population: int = 4
    num_elite: int = 3
    seed: int = 0
    retrain: bool = True
    name_prefix: str = "AttoNet-X"
    max_draws: int = 10
    max_repairs: int = 8
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)

    def __post_init__(self):
        if self.population < 1 or self.num_elite < 1:
            raise ValueError("population and num_elite must be at least 1")

    def to_dict(self) -> Dict:
        return asdict(self)


def _derived_seed(seed: int, candidate_id: int) -> int:
    return int(np.random.SeedSequence([seed, candidate_id]).generate_state(1)[0])


def _inside(output_dir: str, relative_path, state_path: str) -> str:
    """
    ``relative_path`` (read from the search state ``state_path``) joined to
    ``output_dir``, after checking that it resolves (links included) inside it.
    """
    root = os.path.realpath(output_dir)
    if isinstance(relative_path, str) and not os.path.isabs(relative_path):
        path = os.path.realpath(os.path.join(root, relative_path))
        if os.path.commonpath([root, path]) == root and path != root:
            return path
    raise ValueError(
        f"{state_path} names the file {relative_path!r}, which is not inside the search's "
        f"folder {output_dir}: a search state only holds paths relative to its folder. This "
        f"state was changed or comes from elsewhere; nothing was loaded or deleted. Start a "
        f"new --output."
    )


def load_state(output_dir: str) -> Dict:
    """
    The search state in ``output_dir`` (see :data:`STATE_FILE`).

    Raises:
        ValueError: when it is not a valid state, or names a file outside ``output_dir``.
    """
    path = os.path.join(output_dir, STATE_FILE)
    try:
        with open(path) as f:
            state = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a valid search state ({e}); start a new --output") from e
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        version = state.get("version") if isinstance(state, dict) else None
        raise ValueError(f"{path}: search state version {version} is not supported")
    retrained = state.get("retrained", {})
    for record in state.get("candidates", []) + list(retrained.values()):
        for key in _PATH_KEYS:
            if record.get(key) is not None:
                _inside(output_dir, record[key], path)
    return state


def derive_family(state: Dict) -> List[Dict]:
    """
    The sequence of successively better generators and their best candidates.

    Returns:
        list of dicts, one per generator in the sequence: "generator" (k), "candidate"
        (its best record that meets the requirements) and "name".
    """
    candidates = state["candidates"]
    if not candidates:
        return []
    prototype = candidates[0]
    best = prototype["netscore"] if prototype["feasible"] and prototype["netscore"] else -math.inf
    family = []
    for generator in state["generators"]:
        k = generator["index"]
        scored = [
            c for c in candidates
            if c["generator"] == k and c["feasible"] and c["netscore"] is not None
        ]  # fmt: skip
        if not scored:
            continue
        winner = min(scored, key=ranking_key)
        if winner["netscore"] > best:
            best = winner["netscore"]
            name = f"{state['settings']['name_prefix']}-G{k}"
            family.append({"generator": k, "candidate": winner, "name": name})
    return family


class DesignExplorer:
    """
    Explores module cells of one prototype for one task (see the module docstring).

    Files in ``output_dir``: ``explore_state.json``; ``candidates/<id>.yaml`` (every
    candidate's spec) and ``candidates/<id>.pth`` (the weights of the elite, the family
    and the prototype; the others are deleted once they can no longer be parents);
    ``family/<name>.yaml`` and ``family/<name>.pth`` (retrained weights).
    """

    def __init__(
        self,
        evaluator: CandidateEvaluator,
        prototype: AttoNetSpec,
        requirements: DesignRequirements,
        output_dir: str,
        settings: Optional[ExplorerSettings] = None,
        resume: bool = False,
    ):
        """
        Raises:
            FileExistsError: when ``output_dir`` already holds a search and ``resume`` is
                False.
            ValueError: when resuming a search whose settings differ from these.
        """
        self.evaluator = evaluator
        self.prototype = prototype
        self.prototype_genome = CellGenome.from_spec(prototype)
        self.requirements = requirements
        self.output_dir = output_dir
        self.settings = settings or ExplorerSettings()
        self.state_path = os.path.join(output_dir, STATE_FILE)

        setup = {
            "version": STATE_VERSION,
            "task": evaluator.task,
            "accuracy_name": evaluator.accuracy_name,
            "input_size": list(evaluator.input_size),
            "settings": self.settings.to_dict(),
            "evaluation": evaluator.settings(),
            "requirements": requirements.to_dict(),
            "prototype": prototype.to_dict(),
        }
        if os.path.exists(self.state_path):
            if not resume:
                raise FileExistsError(
                    f"{output_dir} already holds a design search ({self.state_path}). Pass "
                    f"--resume to continue it, or choose another --output."
                )
            self.state = load_state(output_dir)
            self._check_same_search(setup)
        else:
            self.state = dict(setup, generators=[], candidates=[], retrained={}, search_seconds=0.0)

    # ------------------------------------------------------------------ state

    def _check_same_search(self, setup: Dict) -> None:
        # JSON turns tuples into lists: compare in JSON form.
        setup = json.loads(json.dumps(setup))
        differ = [key for key, value in setup.items() if self.state.get(key) != value]
        if differ:
            details = "; ".join(
                f"{key}: saved {self.state.get(key)!r}, now {setup[key]!r}" for key in differ
            )
            raise ValueError(
                f"Cannot resume {self.state_path}: the search was started with other "
                f"settings ({details}). Resume with the same flags (the budget may change) "
                f"or choose another --output."
            )

    def _save_state(self) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write(self.state_path, lambda f: json.dump(self.state, f, indent=1), mode="w")

    def _path(self, *parts: str) -> str:
        return os.path.join(self.output_dir, *parts)

    def _state_path(self, relative_path: str) -> str:
        """A path read from the state, checked to be inside ``output_dir``."""
        return _inside(self.output_dir, relative_path, self.state_path)

    @property
    def candidates(self) -> List[Dict]:
        return self.state["candidates"]

    def elite(self) -> List[Dict]:
        """The ``num_elite`` best candidates so far, best first."""
        return sorted(self.candidates, key=ranking_key)[: self.settings.num_elite]

    def family(self) -> List[Dict]:
        return derive_family(self.state)

    # ------------------------------------------------------------------ candidates

    def _spec_of(self, record: Dict) -> AttoNetSpec:
        return AttoNetSpec.from_dict(record["spec"])

    def _measure(
        self,
        record: Dict,
        result: CandidateResult,
    ) -> Dict:
        measured = {
            "accuracy": result.accuracy,
            "params": int(result.params),
            "mult_adds": int(result.mult_adds),
            "latency_ms": result.latency_ms,
        }
        measured["netscore"] = candidate_netscore(result.accuracy, result.params, result.mult_adds)
        measured["met"] = self.requirements.check(measured)
        measured["violation"] = self.requirements.violation(measured)
        measured["feasible"] = measured["violation"] == 0 and all(measured["met"].values())
        measured["metrics"] = json.loads(json.dumps(result.metrics, default=float))
        record.update(measured)
        return record

    def _budget_excess(self, genome: CellGenome, name: str) -> float:
        """The largest value / budget ratio of ``genome`` (0 without budgets)."""
        requirements, spec = self.requirements, genome.to_spec(name)
        if requirements.max_params is None and requirements.max_mult_adds is None:
            return 0.0
        if requirements.max_mult_adds is None:  # counting parameters alone is cheap
            params, mult_adds = self.evaluator.count_parameters(spec), 0
        else:
            params, mult_adds = self.evaluator.complexity(spec)
        return max(requirements.budget_ratios(params, mult_adds).values())

    def _propose(self, generator: CellGenerator, seed: int, name: str):
        """
        A genome from ``generator`` that meets the budgets (see the module docstring).

        Returns:
            (genome, draws, repairs).
        """
        rng = np.random.default_rng(seed)
        for draws in range(1, self.settings.max_draws + 1):
            genome = generator.sample(rng)
            excess = self._budget_excess(genome, name)
            if excess <= 1.0:
                return genome, draws, 0
        for repairs in range(1, self.settings.max_repairs + 1):
            # Parameters and mult-adds grow about quadratically with the widths (less for
            # the stem and the FC, hence the margin).
            genome = genome.scaled(min(0.95, 0.97 / math.sqrt(excess)))
            excess = self._budget_excess(genome, name)
            if excess <= 1.0:
                break
        return genome, draws, repairs

    def _nearest(self, genome: CellGenome, ids: Sequence[int]) -> Dict:
        genes = np.log2(genome.integer_genes())

        def distance(record):
            other = CellGenome.from_spec(self._spec_of(record))
            return float(np.abs(np.log2(other.integer_genes()) - genes).sum())

        records = [self.candidates[i] for i in ids]
        return min(records, key=distance)  # min keeps the first (best-ranked) of ties

    def _run_candidate(
        self,
        candidate_id: int,
        spec: AttoNetSpec,
        schedule: str,
        seed: int,
        parent: Optional[Dict],
        spec_path: str,
    ) -> CandidateResult:
        initialize = None
        if parent is not None:
            parent_state = load_weights_file(self._state_path(parent["weights"]))
            parent_spec = self._spec_of(parent)

            def initialize(model):
                return inherit_weights(
                    model, parent_state, parent_spec, spec, self.evaluator.layout
                )

        return self.evaluator.evaluate(
            spec,
            spec_path,
            schedule,
            seed,
            initialize=initialize,
            measure_latency=self.requirements.needs_latency,
        )

    def _save_weights(self, state_dict: Dict, relative_path: str) -> str:
        path = self._path(relative_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, lambda f: torch.save(state_dict, f), mode="wb")
        return relative_path

    def _evaluate_prototype(self) -> None:
        spec_file = os.path.join("candidates", "0000.yaml")
        save_attonet_spec(self.prototype, self._path(spec_file))
        start = time.perf_counter()
        result = self._run_candidate(
            0, self.prototype, "scratch", _derived_seed(self.settings.seed, 0), None,
            self._path(spec_file),
        )  # fmt: skip
        record = {
            "id": 0,
            "name": self.prototype.name,
            "generator": None,
            "parent": None,
            "draws": 0,
            "repairs": 0,
            "schedule": "scratch",
            "spec": self.prototype.to_dict(),
            "spec_file": spec_file,
            "weights": self._save_weights(
                result.state_dict, os.path.join("candidates", "0000.pth")
            ),
        }
        self._measure(record, result)
        record["seconds"] = time.perf_counter() - start
        self.candidates.append(record)
        self.state["search_seconds"] += record["seconds"]
        self._save_state()

    def _new_generator(self, k: int) -> None:
        elite = self.elite()
        if k == 0:
            generator = CellGenerator.from_prototype(self.prototype_genome, self.settings.generator)
        else:
            previous = CellGenerator.from_dict(
                self.state["generators"][k - 1]["distribution"], self.prototype_genome
            )
            genomes = [CellGenome.from_spec(self._spec_of(r)) for r in elite]
            generator = previous.updated(genomes, self.settings.generator)
        self.state["generators"].append(
            {
                "index": k,
                "distribution": generator.to_dict(),
                "elite": [r["id"] for r in elite],
                "first_candidate": len(self.candidates),
            }
        )
        self._save_state()

    def _evaluate_candidate(self, candidate_id: int, k: int) -> Dict:
        start = time.perf_counter()
        generator_state = self.state["generators"][k]
        generator = CellGenerator.from_dict(generator_state["distribution"], self.prototype_genome)
        seed = _derived_seed(self.settings.seed, candidate_id)
        name = f"candidate-{candidate_id:04d}"
        genome, draws, repairs = self._propose(generator, seed, name)
        spec = genome.to_spec(name)
        parent = self._nearest(genome, generator_state["elite"])

        spec_file = os.path.join("candidates", f"{candidate_id:04d}.yaml")
        save_attonet_spec(spec, self._path(spec_file))
        result = self._run_candidate(
            candidate_id, spec, "finetune", seed, parent, self._path(spec_file)
        )
        weights = os.path.join("candidates", f"{candidate_id:04d}.pth")
        record = {
            "id": candidate_id,
            "name": name,
            "generator": k,
            "parent": parent["id"],
            "draws": draws,
            "repairs": repairs,
            "schedule": "finetune",
            "spec": spec.to_dict(),
            "spec_file": spec_file,
            "weights": self._save_weights(result.state_dict, weights),
        }
        self._measure(record, result)
        record["seconds"] = time.perf_counter() - start
        self.candidates.append(record)
        self.state["search_seconds"] += record["seconds"]
        self._prune_weights()
        return record

    def _prune_weights(self) -> None:
        """Saves the state, then deletes weights that no candidate can inherit any more."""
        keep = {0}
        keep.update(r["id"] for r in self.elite())
        if self.state["generators"]:
            keep.update(self.state["generators"][-1]["elite"])
        keep.update(member["candidate"]["id"] for member in self.family())
        dropped = []
        for record in self.candidates:
            if record["weights"] and record["id"] not in keep:
                dropped.append(self._state_path(record["weights"]))
                record["weights"] = None
        self._save_state()
        for path in dropped:
            if os.path.exists(path):
                os.remove(path)

    # ------------------------------------------------------------------ family

    def _retrain(self, member: Dict) -> None:
        record, name = member["candidate"], member["name"]
        spec = AttoNetSpec.from_dict(dict(record["spec"], name=name))
        spec_file = os.path.join("family", f"{name}.yaml")
        save_attonet_spec(spec, self._path(spec_file))
        weights = os.path.join("family", f"{name}.pth")
        start = time.perf_counter()
        if self.settings.retrain:
            # The prototype's schedule and seed: the same training, the same images.
            result = self._run_candidate(
                record["id"], spec, "scratch", _derived_seed(self.settings.seed, 0), None,
                self._path(spec_file),
            )  # fmt: skip
            retrained = {"schedule": "scratch"}
            self._measure(retrained, result)
            self._save_weights(result.state_dict, weights)
        else:
            retrained = {
                k: record[k]
                for k in ("accuracy", "params", "mult_adds", "latency_ms", "netscore", "met",
                          "violation", "feasible", "metrics")
            }  # fmt: skip
            retrained["schedule"] = "search"
            shutil.copyfile(self._state_path(record["weights"]), self._path(weights))
        retrained.update(
            name=name, spec_file=spec_file, weights=weights, seconds=time.perf_counter() - start
        )
        self.state["retrained"][str(record["id"])] = retrained
        self._save_state()

    # ------------------------------------------------------------------ main loop

    def run(
        self,
        budget: SearchBudget,
        progress: bool = True,
        on_candidate: Optional[Callable[[Dict], None]] = None,
    ) -> Dict:
        """
        Runs (or continues) the search until ``budget`` is spent, then retrains the
        family and returns the state.

        Args:
            budget: candidates after the prototype, or minutes of search (the time of
                all runs of this search together; retraining not included).
            progress: show a tqdm bar over the candidates.
            on_candidate: called with each new candidate's record after the state is saved.
        """
        os.makedirs(self.output_dir, exist_ok=True)
        if not self.candidates:
            logger.info("Training the prototype %s from scratch", self.prototype.name)
            self._evaluate_prototype()

        population = self.settings.population
        done = len(self.candidates) - 1
        bar = tqdm(
            total=budget.candidates,
            initial=done if budget.candidates is not None else 0,
            disable=not progress,
            desc="design search",
            unit="candidate",
            dynamic_ncols=True,
        )
        try:
            while not budget.exhausted(len(self.candidates) - 1, self.state["search_seconds"]):
                candidate_id = len(self.candidates)
                k = (candidate_id - 1) // population
                if k == len(self.state["generators"]):
                    self._new_generator(k)
                record = self._evaluate_candidate(candidate_id, k)
                best = self.elite()[0]
                bar.set_postfix(
                    generator=k,
                    acc=f"{record['accuracy']:.1f}",
                    best=f"{best['netscore'] or float('nan'):.2f}",
                    family=len(self.family()),
                    refresh=False,
                )
                bar.update(1)
                if on_candidate is not None:
                    on_candidate(record)
        finally:
            bar.close()

        for member in self.family():
            if str(member["candidate"]["id"]) not in self.state["retrained"]:
                logger.info("Retraining %s from scratch", member["name"])
                self._retrain(member)
        return self.state

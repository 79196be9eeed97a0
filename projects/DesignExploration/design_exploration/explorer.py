"""The machine-driven design explorer: successive generators of module cells.

The paper (Sec. 2.2) finds a generator G that maximises a performance function U (here
NetScore, or the latency objective that the requirements may choose; see
:mod:`~design_exploration.objective`) over the networks it generates, subject to an
indicator function 1_r (here
:class:`~design_exploration.requirements.DesignRequirements`), by building successive
generators G_0, G_1, ... from a human prototype. Its generator (generative synthesis) is
not public. :class:`DesignExplorer` implements the following, simpler scheme for the same
problem:

0. The peers that requirements are relative to (``max_latency_ms: {of: ShuffleNetV2-FPN}``,
   see :mod:`~design_exploration.requirements`) are measured, once: their latency as the
   candidates' (same engine, threads, runs, process), their parameters and mult-adds,
   and, when a requirement needs it, their accuracy after the prototype's training (same
   schedule, seed and data order: paired with the prototype and the family's
   retraining). The requirements then hold numbers.
1. The prototype is trained from scratch ("scratch" schedule) and measured: candidate 0.
2. G_0 is a :class:`~design_exploration.generator.CellGenerator` centred on the
   prototype's cells. Generator k proposes ``population`` candidates. Each:

   * is sampled from G_k with a random generator seeded by (seed, candidate id);
   * must meet the parameter and mult-add budgets (counted with
     :mod:`atto_detectron.analysis`, before any training): samples over budget are drawn
     again, up to ``max_draws`` times, after which the last one has all its widths scaled
     down until it fits;
   * inherits the weights of its *parent*, the member of G_k's elite closest to it in
     log2 widths, depths and neck (:func:`~design_exploration.space.genome_distance`,
     :mod:`~design_exploration.inherit`), and is fine-tuned briefly ("finetune"
     schedule), then tested on the validation set. Every training of the search (the
     prototype, the candidates, the peers, the family's retraining) uses the same seed,
     so all see the same images in the same order: their accuracies are paired;
   * is ranked: candidates meeting every requirement by the objective's score, then the others by
     how far they miss (:func:`~design_exploration.objective.ranking_key`).

3. The elite is the ``num_elite`` best candidates so far; G_{k+1} moves G_k towards them
   (:meth:`~design_exploration.generator.CellGenerator.updated`).
4. Generator k belongs to the sequence of successively better generators when its best
   candidate that meets the requirements has a higher score than the prototype and
   every earlier generator in the sequence; that candidate joins the *family*, so the
   family's scores increase from member to member.
5. Each family member is then retrained from scratch on the prototype's schedule and
   seed, so that its accuracy owes nothing to its ancestors' training and compares
   fairly with the prototype's; the report gives both figures and which requirements
   hold for the retrained network.

The search state (:class:`~design_exploration.records.SearchState`: settings,
generators, every candidate's measurements, which weights are kept) is written atomically
to ``explore_state.json`` after every candidate, and the candidates' weights next to it,
so a killed search resumes at the candidate it was evaluating; since every random draw is
seeded by (seed, candidate id), the resumed search gives the same candidates and figures
as an uninterrupted one (except latencies). The state's file paths are relative to the
output folder and must stay inside it (a state naming any other file is refused, and
nothing is loaded or deleted); weights are read with ``torch.load(weights_only=True)``,
so a weights file cannot run code (:class:`~design_exploration.folder.SearchFolder`).

Modules: :mod:`.settings` (settings, budget), :mod:`.records` (the state),
:mod:`.folder` (its files), :mod:`.family` (the family and its retraining); this one,
the search loop.
"""

import logging
import math
import os
import time
from typing import Callable, List, Mapping, Optional, Sequence

import numpy as np
from tqdm import tqdm

from atto_detectron.analysis.formatting import format_number
from atto_detectron.modeling import AttoNetSpec

from .evaluate import CandidateEvaluator, CandidateResult
from .family import FamilyMember, derive_family, retrain_member
from .folder import STATE_FILE, SearchFolder, load_state
from .generator import CellGenerator
from .inherit import inherit_weights
from .neck import NeckGenome
from .objective import ranking_key
from .records import CandidateRecord, Figures, GeneratorRecord, PeerRecord, SearchState
from .requirements import DesignRequirements
from .settings import ExplorerSettings, SearchBudget, parse_budget
from .space import CellGenome, genome_distance

# The names that moved to the modules above stay importable from here.
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


class DesignExplorer:
    """
    Explores module cells of one prototype for one task (see the module docstring).

    Files in ``output_dir``: ``explore_state.json``; ``candidates/<id>.yaml`` (every
    candidate's spec) and ``candidates/<id>.pth`` (the weights of the elite, the family
    and the prototype; the others are deleted once they can no longer be parents);
    ``family/<name>.yaml`` and ``family/<name>.pth`` (retrained weights).

    Attributes:
        state (SearchState): the search so far; saved after every change.
        folder (SearchFolder): the files in ``output_dir``.
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
            ValueError: when resuming a search whose settings differ from these, or whose
                state is not valid; when the evaluator cannot measure latency in the
                settings' engine, or has no peer that the requirements name.
        """
        engines = (settings or ExplorerSettings()).latency.engines
        for engine in engines:
            if engine not in evaluator.latency_engines:
                raise ValueError(
                    f"--task {evaluator.task} measures latency in "
                    f"{', '.join(evaluator.latency_engines)}; got the latency engine {engine!r}"
                )
        if isinstance(requirements.max_latency_ms, Mapping):
            unmeasured = sorted(set(requirements.max_latency_ms) - set(engines))
            if unmeasured:
                raise ValueError(
                    f"max_latency_ms has a budget in {', '.join(unmeasured)}, but latency is "
                    f"measured in {', '.join(engines)}: add the engine to --latency-engine"
                )
        for reference in requirements.peer_references().values():
            evaluator.peer_config_file(reference.of)  # fails early, naming the known peers
        self.evaluator = evaluator
        self.prototype = prototype
        self.prototype_genome = CellGenome.from_spec(prototype, evaluator.prototype_neck)
        self.requirements = requirements
        self.output_dir = output_dir
        self.settings = settings or ExplorerSettings()
        self.folder = SearchFolder(output_dir)
        self.state_path = self.folder.state_path

        new_state = SearchState(
            task=evaluator.task,
            accuracy_name=evaluator.accuracy_name,
            input_size=evaluator.input_size,
            settings=self.settings,
            evaluation=evaluator.settings(),
            requirements=requirements,
            prototype=prototype,
        )
        if self.folder.has_state():
            if not resume:
                raise FileExistsError(
                    f"{output_dir} already holds a design search ({self.state_path}). Pass "
                    f"--resume to continue it, or choose another --output."
                )
            self.state = self.folder.load_state()
            self._check_same_search(new_state)
        else:
            self.state = new_state

    # ------------------------------------------------------------------ state

    def _check_same_search(self, new_state: SearchState) -> None:
        saved, now = self.state.setup(), new_state.setup()
        differ = [key for key, value in now.items() if saved.get(key) != value]
        if differ:
            details = "; ".join(
                f"{key}: saved {saved.get(key)!r}, now {now[key]!r}" for key in differ
            )
            raise ValueError(
                f"Cannot resume {self.state_path}: the search was started with other "
                f"settings ({details}). Resume with the same flags (the budget may change) "
                f"or choose another --output."
            )

    def _save_state(self) -> None:
        self.folder.save_state(self.state)

    @property
    def resolved_requirements(self) -> DesignRequirements:
        """The requirements with the measured peers' figures in place of references."""
        return self.requirements.resolved(
            {name: peer.figures() for name, peer in self.state.peers.items()}
        )

    @property
    def latency_request(self):
        """What the evaluator is asked to measure latency with (False: no latency)."""
        return self.settings.latency if self.requirements.needs_latency else False

    def _measure_peers(self) -> None:
        """Measures each peer that the requirements name and the state lacks (step 0)."""
        for name in self.requirements.peer_names():
            if name in self.state.peers:
                continue
            figures = self.requirements.peer_figures(name)
            logger.info("Measuring the peer %s (%s)", name, ", ".join(figures))
            record = self.evaluator.measure_peer(
                name,
                self.settings.training_seed,  # the same images, in the same order
                accuracy="accuracy" in figures or "mask_accuracy" in figures,
                latency=(
                    self.settings.latency
                    if self.requirements.needs_latency or "latency_ms" in figures
                    else None
                ),
            )
            if not isinstance(record, PeerRecord):
                raise TypeError(f"measure_peer returned {record!r}, not a PeerRecord")
            self.state.peers[name] = record
            self._save_state()

    @property
    def candidates(self) -> List[CandidateRecord]:
        return self.state.candidates

    def elite(self) -> List[CandidateRecord]:
        """The ``num_elite`` best candidates so far, best first."""
        return sorted(self.candidates, key=ranking_key)[: self.settings.num_elite]

    def family(self) -> List[FamilyMember]:
        return derive_family(self.state)

    # ------------------------------------------------------------------ candidates

    def _budget_excess(self, genome: CellGenome, name: str) -> float:
        """The largest value / budget ratio of ``genome`` (0 without budgets)."""
        requirements, spec = self.resolved_requirements, genome.to_spec(name)
        if requirements.max_params is None and requirements.max_mult_adds is None:
            return 0.0
        if requirements.max_mult_adds is None:  # counting parameters alone is cheap
            params, mult_adds = self.evaluator.count_parameters(spec, genome.neck), 0
        else:
            params, mult_adds = self.evaluator.complexity(spec, genome.neck)
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

    def _nearest(self, genome: CellGenome, ids: Sequence[int]) -> CandidateRecord:
        records = [self.candidates[i] for i in ids]
        # min keeps the first (best-ranked) of ties
        return min(records, key=lambda record: genome_distance(genome, record.genome()))

    def _train(
        self,
        spec: AttoNetSpec,
        spec_file: str,
        schedule: str,
        neck: Optional[NeckGenome],
        parent: Optional[CandidateRecord],
    ) -> CandidateResult:
        """
        Trains ``spec`` with ``neck`` on ``schedule``, from ``parent``'s weights when
        given, with the search's one training seed (paired data order).
        """
        initialize = None
        if parent is not None:
            parent_state = self.folder.load_weights(parent.weights)

            def initialize(model):
                return inherit_weights(
                    model, parent_state, parent.spec, spec, self.evaluator.layout
                )

        return self.evaluator.evaluate(
            spec,
            self.folder.path(spec_file),
            schedule,
            self.settings.training_seed,
            initialize=initialize,
            measure_latency=self.latency_request,
            neck=neck,
        )

    def _evaluate(
        self,
        candidate_id: int,
        spec: AttoNetSpec,
        schedule: str,
        start: float,
        parent: Optional[CandidateRecord] = None,
        generator: Optional[int] = None,
        draws: int = 0,
        repairs: int = 0,
        neck: Optional[NeckGenome] = None,
    ) -> CandidateRecord:
        """
        Trains and measures candidate ``candidate_id`` (the prototype: 0, no parent or
        generator), adds its record to the state and saves it; ``start`` is when work on
        it began. The one place where candidate records are made.
        """
        spec_file = os.path.join("candidates", f"{candidate_id:04d}.yaml")
        self.folder.save_spec(spec, spec_file)
        result = self._train(spec, spec_file, schedule, neck, parent)
        weights = os.path.join("candidates", f"{candidate_id:04d}.pth")
        record = CandidateRecord(
            id=candidate_id,
            name=spec.name,
            generator=generator,
            parent=None if parent is None else parent.id,
            draws=draws,
            repairs=repairs,
            schedule=schedule,
            spec=spec,
            spec_file=spec_file,
            weights=self.folder.save_weights(result.state_dict, weights),
            figures=Figures.measure(result, self.resolved_requirements),
            seconds=time.perf_counter() - start,
            neck=neck,
        )
        self.candidates.append(record)
        self.state.search_seconds += record.seconds
        self._prune_weights()
        return record

    def _evaluate_prototype(self) -> CandidateRecord:
        return self._evaluate(
            0, self.prototype, "scratch", time.perf_counter(), neck=self.prototype_genome.neck
        )

    def _new_generator(self, k: int) -> None:
        elite = self.elite()
        if k == 0:
            generator = CellGenerator.from_prototype(self.prototype_genome, self.settings.generator)
        else:
            previous = CellGenerator.from_dict(
                self.state.generators[k - 1].distribution, self.prototype_genome
            )
            genomes = [r.genome() for r in elite]
            generator = previous.updated(genomes, self.settings.generator)
        self.state.generators.append(
            GeneratorRecord(
                index=k,
                distribution=generator.to_dict(),
                elite=[r.id for r in elite],
                first_candidate=len(self.candidates),
            )
        )
        self._save_state()

    def _evaluate_candidate(self, candidate_id: int, k: int) -> CandidateRecord:
        start = time.perf_counter()
        generator_record = self.state.generators[k]
        generator = CellGenerator.from_dict(generator_record.distribution, self.prototype_genome)
        name = f"candidate-{candidate_id:04d}"
        genome, draws, repairs = self._propose(
            generator, self.settings.seed_for(candidate_id), name
        )
        return self._evaluate(
            candidate_id,
            genome.to_spec(name),
            "finetune",
            start,
            parent=self._nearest(genome, generator_record.elite),
            generator=k,
            draws=draws,
            repairs=repairs,
            neck=genome.neck,
        )

    def _prune_weights(self) -> None:
        """Saves the state, then deletes weights that no candidate can inherit any more."""
        keep = {0}
        keep.update(r.id for r in self.elite())
        if self.state.generators:
            keep.update(self.state.generators[-1].elite)
        keep.update(member.candidate.id for member in self.family())
        dropped = []
        for record in self.candidates:
            if record.weights and record.id not in keep:
                dropped.append(self.folder.checked(record.weights))
                record.weights = None
        self._save_state()
        self.folder.remove(dropped)

    # ------------------------------------------------------------------ main loop

    def run(
        self,
        budget: SearchBudget,
        progress: bool = True,
        on_candidate: Optional[Callable[[CandidateRecord], None]] = None,
    ) -> SearchState:
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
        self._measure_peers()
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
            while not budget.exhausted(len(self.candidates) - 1, self.state.search_seconds):
                candidate_id = len(self.candidates)
                k = (candidate_id - 1) // population
                if k == len(self.state.generators):
                    self._new_generator(k)
                record = self._evaluate_candidate(candidate_id, k)
                best = self.elite()[0]
                bar.set_postfix(
                    generator=k,
                    acc=format_number(record.figures.accuracy, digits=1),
                    best=format_number(best.figures.score, digits=2, missing="nan"),
                    family=len(self.family()),
                    refresh=False,
                )
                bar.update(1)
                if on_candidate is not None:
                    on_candidate(record)
        finally:
            bar.close()

        for member in self.family():
            if member.candidate.id not in self.state.retrained:
                logger.info("Retraining %s from scratch", member.name)
                self.state.retrained[member.candidate.id] = retrain_member(
                    member, self.evaluator, self.resolved_requirements, self.settings, self.folder
                )
                self._save_state()
        return self.state

"""
The family of a design search: the best candidates of the successively better generators,
and their final training.
"""

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass
from typing import List

from .evaluate import CandidateEvaluator
from .folder import SearchFolder
from .objective import ranking_key
from .records import CandidateRecord, Figures, RetrainedRecord, SearchState
from .requirements import DesignRequirements
from .settings import ExplorerSettings

__all__ = ["FamilyMember", "derive_family", "prototype_score_to_beat", "retrain_member"]


@dataclass(frozen=True)
class FamilyMember:
    """
    Attributes:
        generator: k of the generator G_k in the sequence.
        candidate: G_k's best candidate that meets the requirements.
        name: the member's name ("<prefix>-G<k>").
    """

    generator: int
    candidate: CandidateRecord
    name: str


def prototype_score_to_beat(figures: Figures) -> float:
    """
    The score a network must exceed to improve on the prototype with ``figures``: its
    score where it meets the requirements; -inf where it misses them (it sets no bar).
    """
    return figures.score if figures.feasible and figures.score is not None else -math.inf


def derive_family(state: SearchState) -> List[FamilyMember]:
    """
    The sequence of successively better generators and their best candidates: generator k
    joins it when its best candidate that meets the requirements has a higher score (the
    objective's: NetScore unless the requirements chose another) than the prototype and
    every earlier generator in the sequence.
    """
    prototype = state.prototype_record
    if prototype is None:
        return []
    best = prototype_score_to_beat(prototype.figures)
    family = []
    for generator in state.generators:
        k = generator.index
        scored = [
            c
            for c in state.candidates
            if c.generator == k and c.figures.feasible and c.figures.score is not None
        ]
        if not scored:
            continue
        winner = min(scored, key=ranking_key)
        if winner.figures.score > best:
            best = winner.figures.score
            family.append(FamilyMember(k, winner, state.settings.member_name(k)))
    return family


def retrain_member(
    member: FamilyMember,
    evaluator: CandidateEvaluator,
    requirements: DesignRequirements,
    settings: ExplorerSettings,
    folder: SearchFolder,
) -> RetrainedRecord:
    """
    Writes ``member``'s spec file, its detector's config (``<name>_config.yaml``, for
    --task detection) and weights to ``family/`` in ``folder`` (``requirements``
    resolved: numbers only): retrained from
    scratch when ``settings.retrain`` (so that its accuracy owes nothing to its ancestors'
    training), else the weights and figures of the search.
    """
    record, name = member.candidate, member.name
    spec = dataclasses.replace(record.spec, name=name)
    spec_file = os.path.join("family", f"{name}.yaml")
    folder.save_spec(spec, spec_file)
    config = evaluator.member_config(folder.path(spec_file), record.neck)
    if config is not None:
        # The detector as a Detectron2 config: the search's, with this backbone and neck.
        folder.save_text(config, os.path.join("family", f"{name}_config.yaml"))
    weights = os.path.join("family", f"{name}.pth")
    start = time.perf_counter()
    if settings.retrain:
        # The prototype's schedule and seed: the same training, the same images.
        result = evaluator.evaluate(
            spec,
            folder.path(spec_file),
            "scratch",
            settings.training_seed,
            initialize=None,
            measure_latency=settings.latency if requirements.needs_latency else False,
            neck=record.neck,
        )
        schedule, figures = "scratch", Figures.measure(result, requirements)
        folder.save_weights(result.state_dict, weights)
    else:
        schedule, figures = "search", copy.deepcopy(record.figures)
        folder.copy(record.weights, weights)
    return RetrainedRecord(
        name=name,
        schedule=schedule,
        spec_file=spec_file,
        weights=weights,
        figures=figures,
        seconds=time.perf_counter() - start,
    )

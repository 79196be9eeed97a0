"""
The universal performance function U of Eq. 1 and how candidates are ranked.

Two objectives, chosen by the requirements file's ``objective`` key
(:class:`~design_exploration.requirements.DesignRequirements`):

* "netscore" (the default): NetScore, 20 log10(a^2 / (p^0.5 m^0.5)) with the accuracy a in
  percent, parameters p in millions and mult-adds m in billions
  (:func:`candidate_netscore`);
* "latency": the same with the measured latency in place of the mult-adds,
  20 log10(a^2 / (p^0.5 t^0.5)), t in milliseconds (:func:`latency_score`).
"""

import math
from typing import Mapping, Optional, Tuple

import torch
from torch import nn

from atto_detectron.analysis import netscore

from .latency import time_median_ms

__all__ = [
    "OBJECTIVES",
    "candidate_netscore",
    "latency_score",
    "objective_score",
    "ranking_key",
    "measure_latency_ms",
]

OBJECTIVES = ("netscore", "latency")


def candidate_netscore(accuracy: float, params: float, mult_adds: float) -> Optional[float]:
    """
    NetScore with alpha = 2, beta = gamma = 0.5 (see :func:`atto_detectron.analysis.netscore`)
    of a candidate with ``accuracy`` percent; None when the accuracy is 0 (NetScore is
    -infinity there).
    """
    if not accuracy > 0:
        return None
    return netscore(accuracy, params, mult_adds)


def latency_score(accuracy: float, params: float, latency_ms: Optional[float]) -> Optional[float]:
    """
    The "latency" objective: 20 * log10(a^2 / (p^0.5 * t^0.5)), a = accuracy in percent,
    p = parameters in millions, t = latency in milliseconds; None when the accuracy is 0
    or the latency is unknown.

    It is NetScore with the measured latency in place of the mult-adds. NetScore's
    mult-adds stand for the cost of one inference; the latency, measured on the machine
    and engine of the deployment, is that cost itself, so it takes their place and their
    exponent (gamma = 0.5). The other exponents are NetScore's, for NetScore's reasons:
    alpha = 2 makes accuracy count more than cost (halving the latency is worth the
    same as 19% more accuracy, as halving the mult-adds is under NetScore), and
    beta = 0.5 keeps the parameters (memory and storage) in the balance. Scores of the two
    objectives are on different scales and are not compared with each other.
    """
    if not (accuracy > 0) or latency_ms is None:
        return None
    if not (params > 0 and latency_ms > 0):
        raise ValueError(
            f"the latency objective needs positive parameters and latency; got {params}, "
            f"{latency_ms}"
        )
    return 20.0 * math.log10(accuracy**2 / math.sqrt(params / 1e6 * latency_ms))


def objective_score(
    objective: str,
    accuracy: float,
    params: float,
    mult_adds: float,
    latency_ms: Optional[float] = None,
) -> Optional[float]:
    """The value of ``objective`` (one of :data:`OBJECTIVES`); higher is better."""
    if objective == "netscore":
        return candidate_netscore(accuracy, params, mult_adds)
    if objective == "latency":
        return latency_score(accuracy, params, latency_ms)
    raise ValueError(f"objective must be one of {OBJECTIVES}; got {objective!r}")


def ranking_key(record) -> Tuple:
    """
    Sort key, best first: candidates that meet every requirement come first, by the
    objective's score (NetScore unless the requirements chose another); then the others,
    by how far they are from meeting them (their violation). Ties go to the earlier
    candidate.

    Args:
        record: a :class:`~design_exploration.records.CandidateRecord`, or a mapping
            with its "violation", "score" (or, without it, "netscore") and "id".
    """
    if isinstance(record, Mapping):
        violation, index = record["violation"], record["id"]
        score = record["score"] if "score" in record else record["netscore"]
    else:
        violation, score, index = record.figures.violation, record.figures.score, record.id
    if violation == 0:
        return (0, -(score if score is not None else -math.inf), index)
    return (1, violation, index)


@torch.no_grad()
def measure_latency_ms(model: nn.Module, inputs, runs: int = 20, warmup: int = 3) -> float:
    """
    Median wall time, in milliseconds, of ``runs`` forward passes of ``model`` (eval mode)
    on ``inputs`` (a tensor or a tuple of model arguments), after ``warmup`` untimed ones,
    with the process's current torch thread setting
    (:func:`~design_exploration.latency.time_median_ms`).
    """
    was_training = model.training
    model.eval()
    args = inputs if isinstance(inputs, tuple) else (inputs,)

    def run():
        model(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    try:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time_median_ms(run, runs, warmup)
    finally:
        model.train(was_training)

"""The universal performance function U of Eq. 1 (NetScore) and how candidates are ranked."""

import math
import statistics
import time
from typing import Mapping, Optional, Tuple

import torch
from torch import nn

from atto_detectron.analysis import netscore

__all__ = ["candidate_netscore", "ranking_key", "measure_latency_ms"]


def candidate_netscore(accuracy: float, params: float, mult_adds: float) -> Optional[float]:
    """
    NetScore with alpha = 2, beta = gamma = 0.5 (see :func:`atto_detectron.analysis.netscore`)
    of a candidate with ``accuracy`` percent; None when the accuracy is 0 (NetScore is
    -infinity there).
    """
    if not accuracy > 0:
        return None
    return netscore(accuracy, params, mult_adds)


def ranking_key(record) -> Tuple:
    """
    Sort key, best first: candidates that meet every requirement come first, by NetScore;
    then the others, by how far they are from meeting them (their violation). Ties go to
    the earlier candidate.

    Args:
        record: a :class:`~design_exploration.records.CandidateRecord`, or a mapping
            with its "violation", "netscore" and "id".
    """
    if isinstance(record, Mapping):
        violation, score, index = record["violation"], record["netscore"], record["id"]
    else:
        violation, score, index = record.figures.violation, record.figures.netscore, record.id
    if violation == 0:
        return (0, -(score if score is not None else -math.inf), index)
    return (1, violation, index)


@torch.no_grad()
def measure_latency_ms(model: nn.Module, inputs, runs: int = 20, warmup: int = 3) -> float:
    """
    Median wall time, in milliseconds, of ``runs`` forward passes of ``model`` (eval mode)
    on ``inputs`` (a tensor or a tuple of model arguments), after ``warmup`` untimed ones,
    with the process's current torch thread setting.
    """
    was_training = model.training
    model.eval()
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        for _ in range(warmup):
            model(*args)
        times = []
        for _ in range(runs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(*args)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)

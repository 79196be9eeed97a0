"""The results file of a classifier evaluation: top-1/top-5, complexity, NetScore."""

import json
import os
from typing import Dict, Mapping

import torch
from torch import nn

from ..analysis import count_mult_adds, count_parameters, netscore
from ..analysis.formatting import format_number
from ..checkpoint import atomic_write

__all__ = ["classifier_results", "format_classifier_results", "write_classifier_results"]


def classifier_results(
    model: nn.Module, metrics: Mapping, image_size: int, model_name: str, **extra
) -> Dict:
    """
    Args:
        model: the evaluated classifier, measured on one ``(1, 3, image_size, image_size)``
            input (parameters and mult-adds as :mod:`atto_detectron.analysis` counts them).
        metrics: what :func:`evaluate_classifier` or :meth:`ClassifierTrainer.train`
            returned ("top1", "top5", "num_images", ...).
        image_size: side of the evaluated images.
        model_name: e.g. "AttoNet-A" (the name ``tools/analyze_complexity.py
            --accuracy-from`` matches to its rows).
        extra: more entries for the record.

    Returns:
        dict: "model", "top1", "top5" (percent), "params", "mult_adds", "image_size",
        "netscore" (None when top-1 is 0), the rest of ``metrics`` and ``extra``.
    """
    model_device = next(model.parameters()).device
    params = count_parameters(model)
    mult_adds = count_mult_adds(
        model, (torch.zeros(1, 3, image_size, image_size, device=model_device),)
    )
    top1 = float(metrics["top1"])
    record = {
        "model": model_name,
        "top1": top1,
        "top5": float(metrics["top5"]),
        "params": params,
        "mult_adds": mult_adds,
        "image_size": image_size,
        "netscore": netscore(top1, params, mult_adds) if top1 > 0 else None,
    }
    record.update({k: v for k, v in metrics.items() if k not in record})
    record.update(extra)
    return record


def write_classifier_results(record: Mapping, path: str) -> str:
    """Writes ``record`` as JSON to ``path`` (atomically) and returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: json.dump(record, f, indent=2), mode="w")
    return path


def format_classifier_results(record: Mapping) -> str:
    """One line per figure, for the console."""
    size = record["image_size"]
    return "\n".join(
        [
            f"{record['model']} on {record.get('num_images', '?')} validation images:",
            f"  top-1      {format_number(record['top1'], digits=2, unit='%')}",
            f"  top-5      {format_number(record['top5'], digits=2, unit='%')}",
            f"  params     {record['params']:,} ({format_number(record['params'], 1e6, 3, 'M')})",
            f"  mult-adds  {record['mult_adds']:,} "
            f"({format_number(record['mult_adds'], 1e6, 2, 'M')} at {size}x{size})",
            f"  NetScore   {format_number(record['netscore'], digits=2)} "
            "(top-1, params and mult-adds above; alpha=2, beta=gamma=0.5)",
        ]
    )

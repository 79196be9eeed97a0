"""The final report of a training or evaluation run: APd / APm and complexity."""

import json
import math
import os
from typing import Dict, Mapping

from detectron2.config import CfgNode

from ..analysis.detection import detection_complexity
from ..analysis.formatting import format_number
from ..checkpoint import atomic_write

__all__ = ["summarize_ap", "eval_image_size", "write_results", "format_summary"]

AP_KEYS = ("AP", "AP50", "AP75")


def summarize_ap(
    results: Mapping, dataset_names=("test",)
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """
    Args:
        results: what ``DefaultTrainer.test`` returns: {dataset: {"bbox": {...},
            "segm": {...}}}, or the inner dict alone when there is one dataset.
        dataset_names: the test sets (cfg.DATASETS.TEST), to name the inner-dict form.

    Returns:
        dict: {dataset: {"APd": {"AP": .., "AP50": .., "AP75": ..}, "APm": {...}}} (APm
        only for mask models), in percent as COCOEvaluator reports them.
    """
    if "bbox" in results or "segm" in results:
        results = {dataset_names[0]: results}
    summary = {}
    for dataset, tasks in results.items():
        summary[dataset] = {
            label: {k: float(tasks[task][k]) for k in AP_KEYS}
            for task, label in (("bbox", "APd"), ("segm", "APm"))
            if task in tasks
        }
    return summary


def eval_image_size(cfg: CfgNode, aspect_ratio: float = 4 / 3):
    """(H, W) of a landscape image of ``aspect_ratio`` after the config's test resize."""
    short = cfg.INPUT.MIN_SIZE_TEST
    long = min(int(round(short * aspect_ratio)), cfg.INPUT.MAX_SIZE_TEST)
    return short, long


def write_results(
    cfg: CfgNode,
    results: Mapping,
    iteration: int,
    path: str = None,
    provenance: Mapping = None,
) -> Dict:
    """
    Writes ``results.json`` in OUTPUT_DIR (or ``path``): APd/APm per test set, all of
    COCOEvaluator's figures, the model's parameters and mult-adds (see
    :func:`detection_complexity`) at the config's test size, and ``provenance`` (where
    the results come from: see :func:`atto_detectron.engine.provenance.run_provenance`).
    """
    complexity = detection_complexity(cfg, eval_image_size(cfg))
    record = {
        "iteration": iteration,
        "summary": summarize_ap(results, cfg.DATASETS.TEST),
        "coco_eval": results,
        "params": complexity["params"]["total"],
        "mult_adds": complexity["mult_adds"]["total"],
        "complexity": complexity,
        "provenance": dict(provenance or {}),
    }
    path = path or os.path.join(cfg.OUTPUT_DIR, "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    # Never seen half-written: tools that wait for results.json read it as it appears.
    atomic_write(path, lambda f: json.dump(_jsonable(record), f, indent=2))
    return record


def format_summary(record: Mapping) -> str:
    lines = []
    for dataset, labels in record["summary"].items():
        for label, values in labels.items():
            name = "box AP" if label == "APd" else "mask AP"
            figures = ", ".join(f"{k} {format_number(v)}" for k, v in values.items())
            lines.append(f"{dataset}: {label} ({name}): {figures}")
    h, w = record["complexity"]["image_size"]
    lines.append(
        f"model: {format_number(record['params'], 1e6, 2, 'M')} parameters, "
        f"{format_number(record['mult_adds'], 1e9, 1, 'G')} mult-adds on a {h}x{w} image"
    )
    return "\n".join(lines)


def _jsonable(value):
    # COCOEvaluator reports NaN where there is nothing to score; JSON has null for that.
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

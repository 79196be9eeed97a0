"""The complexity report: the paper's figures beside measured ones."""

import json
import os
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

from tabulate import tabulate

from ..config import load_config
from ..modeling import get_attonet_spec
from .classifiers import CLASSIFIER_BUILDERS, classifier_complexity
from .complexity import netscore
from .detection import DETECTOR_PARTS, detection_complexity, r50_fpn_maskrcnn_config
from .formatting import format_number, format_ratio
from .paper_reference import ATTO_MASKRCNN, TABLE2

__all__ = [
    "parse_accuracies",
    "read_accuracy_file",
    "read_accuracies",
    "complexity_report",
    "format_report",
]


def parse_accuracies(text: str) -> Dict[str, float]:
    """
    Parses "A=73.0,B=71.1,MobileNet-V1=64.52" into {"AttoNet-A": 73.0, ...}: AttoNet
    variants by any name :func:`get_attonet_spec` accepts, baselines by their names in
    :data:`CLASSIFIER_BUILDERS` (case-insensitive). Accuracies are top-1 in percent.
    """
    accuracies = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--accuracy: expected NAME=TOP1 pairs, got {item!r}")
        name = _classifier_name(name.strip())
        try:
            accuracies[name] = float(value)
        except ValueError:
            raise ValueError(f"--accuracy: {item!r}: top-1 must be a number in percent") from None
        if not 0 <= accuracies[name] <= 100:
            raise ValueError(f"--accuracy: {item!r}: top-1 is in percent, 0 to 100")
    return accuracies


def _classifier_name(name: str) -> str:
    by_lower_name = {n.lower(): n for n in CLASSIFIER_BUILDERS}
    if name.lower() in by_lower_name:
        return by_lower_name[name.lower()]
    return get_attonet_spec(name).name


def read_accuracy_file(path: str) -> Tuple[str, float, Dict]:
    """
    Reads the results file of ``tools/train_classifier.py`` (``OUTPUT/results.json``).

    Returns:
        tuple: (the classifier's name in :data:`CLASSIFIER_BUILDERS`, e.g. "AttoNet-D";
        top-1 in percent; the whole record).

    Raises:
        ValueError: naming ``path`` when it is missing, not JSON, lacks "model" or "top1",
            or names a classifier that is not one of the report's.
    """
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--accuracy-from: {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--accuracy-from: cannot read {path} as JSON ({e})") from None
    if not isinstance(record, dict) or "model" not in record or "top1" not in record:
        raise ValueError(
            f"--accuracy-from: {path} has no 'model' and 'top1' entries; expected the "
            f"results.json that tools/train_classifier.py writes"
        )
    try:
        name = _classifier_name(str(record["model"]))
    except ValueError:
        raise ValueError(
            f"--accuracy-from: {path} is a result of {record['model']!r}, which is not one of "
            f"the report's classifiers ({', '.join(CLASSIFIER_BUILDERS)})"
        ) from None
    return name, float(record["top1"]), record


def read_accuracies(paths: Sequence[str]) -> Dict[str, float]:
    """
    Top-1 accuracies from results files (see :func:`read_accuracy_file`), by classifier
    name; two files for the same classifier are an error.
    """
    accuracies, sources = {}, {}
    for path in paths:
        name, top1, _ = read_accuracy_file(path)
        if name in accuracies:
            raise ValueError(
                f"--accuracy-from: {path} and {sources[name]} both give the top-1 of {name}; "
                f"pass one of them"
            )
        accuracies[name], sources[name] = top1, path
    return accuracies


def complexity_report(
    config_file: str,
    baseline_config_file: Optional[str] = None,
    image_size: Tuple[int, int] = (800, 1067),
    accuracies: Optional[Dict[str, float]] = None,
    classifiers: Sequence[str] = tuple(CLASSIFIER_BUILDERS),
    detection_opts: Sequence[str] = (),
) -> Dict:
    """
    Measures the Table 2 classifiers (51 classes, 224x224) and compares the Mask R-CNN of
    ``config_file`` with ResNet-50-FPN Mask R-CNN (``baseline_config_file``, or
    Detectron2's model-zoo config with as many classes) on one ``image_size`` image.

    Returns:
        dict: "classifiers" (list of rows), "detection" ({"model": ..., "baseline": ...,
        "ratios": ...}) and "paper" (the figures printed in the paper).
    """
    accuracies = accuracies or {}
    rows = []
    for name in classifiers:
        row = classifier_complexity(name)
        row["paper"] = TABLE2.get(name)
        if name in accuracies:
            row["top1"] = accuracies[name]
            row["netscore"] = netscore(accuracies[name], row["params"], row["mult_adds"])
        rows.append(row)

    cfg = load_config(config_file, detection_opts, device="cpu")
    if baseline_config_file:
        baseline_cfg = load_config(baseline_config_file, device="cpu")
    else:
        baseline_cfg = r50_fpn_maskrcnn_config(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
    model = detection_complexity(cfg, image_size)
    baseline = detection_complexity(baseline_cfg, image_size)
    ratios = {
        kind: OrderedDict(
            (part, baseline[kind][part] / model[kind][part] if model[kind][part] else None)
            for part in DETECTOR_PARTS
        )
        for kind in ("params", "mult_adds")
    }
    model["config_file"] = os.path.relpath(config_file)
    baseline["config_file"] = baseline_config_file or "detectron2 model zoo: R50-FPN Mask R-CNN"
    return {
        "classifiers": rows,
        "detection": {"model": model, "baseline": baseline, "ratios": ratios},
        "paper": {"table2": TABLE2, "atto_maskrcnn": ATTO_MASKRCNN},
    }


def _classifier_table(rows) -> str:
    table = []
    for row in rows:
        paper = row["paper"] or {}
        table.append(
            [
                row["name"],
                row["params"] / 1e6,
                paper.get("params", 0) / 1e6 or "-",
                row["mult_adds"] / 1e6,
                paper.get("mult_adds", 0) / 1e6 or "-",
                f"{row['top1']:.2f}" if "top1" in row else "-",
                f"{row['netscore']:.2f}" if "netscore" in row else "-",
                paper.get("netscore", "-"),
            ]
        )
    headers = [
        "model",
        "params (M)",
        "paper",
        "mult-adds (M)",
        "paper",
        "top-1 (%)",
        "NetScore",
        "paper",
    ]
    return tabulate(table, headers=headers, tablefmt="pipe", floatfmt=".2f")


def _breakdown_table(rows) -> str:
    rows = [row for row in rows if "mult_adds_by_layer" in row]
    if not rows:
        return ""
    kinds = list(rows[0]["mult_adds_by_layer"])
    table = []
    for row in rows:
        by_layer = row["mult_adds_by_layer"]
        without_projection = row["mult_adds"] - by_layer["projection 1x1"]
        paper = (row["paper"] or {}).get("mult_adds")
        table.append(
            [row["name"]]
            + [by_layer[k] / 1e6 for k in kinds]
            + [row["mult_adds"] / 1e6, without_projection / 1e6]
            + [paper / 1e6 if paper else "-"]
        )
    headers = ["model (M mult-adds)"] + kinds + ["total", "total w/o projection", "paper"]
    return tabulate(table, headers=headers, tablefmt="pipe", floatfmt=".2f")


def _detection_table(detection) -> str:
    model, baseline, ratios = detection["model"], detection["baseline"], detection["ratios"]
    table = []
    for part in DETECTOR_PARTS:
        table.append(
            [
                part,
                format_number(model["params"][part], 1e6, 2),
                format_number(baseline["params"][part], 1e6, 2),
                format_ratio(ratios["params"][part], 1),
                format_number(model["mult_adds"][part], 1e9, 1),
                format_number(baseline["mult_adds"][part], 1e9, 1),
                format_ratio(ratios["mult_adds"][part], 1),
            ]
        )
    headers = [
        "part",
        "params (M)",
        "R50 params (M)",
        "ratio",
        "mult-adds (G)",
        "R50 mult-adds (G)",
        "ratio",
    ]
    return tabulate(table, headers=headers, tablefmt="pipe")


def format_report(report: Dict) -> str:
    """The report as Markdown tables with their captions."""
    detection = report["detection"]
    model = detection["model"]
    height, width = model["image_size"]
    paper = report["paper"]["atto_maskrcnn"]
    return "\n\n".join(
        [
            "## Classifiers (51 classes, 224x224 input)\n\n"
            + _classifier_table(report["classifiers"]),
            "## AttoNet mult-adds by layer kind (M)\n\n" + _breakdown_table(report["classifiers"]),
            f"## Mask R-CNN: {model['config_file']} vs ResNet-50-FPN\n\n"
            f"One {height}x{width} image, eval mode, {model['proposals']} proposals and "
            f"{model['detections']} detections (the configs' test maxima, enforced).\n\n"
            + _detection_table(detection)
            + f"\n\nPaper (input size not stated): Atto-MaskRCNN {paper['params'] / 1e6:.1f}M "
            f"parameters, {paper['mult_adds'] / 1e9:.0f}G mult-adds; "
            f"~{paper['params_ratio_vs_r50']:.0f}x fewer parameters and "
            f"~{paper['mult_adds_ratio_vs_r50']:.0f}x fewer mult-adds than ResNet-50 Mask R-CNN.",
        ]
    )

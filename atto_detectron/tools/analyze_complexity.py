"""
Parameters, mult-adds and NetScore of the AttoNets beside the paper's Table 2 and the
MobileNet/ShuffleNet baselines, and Atto-MaskRCNN beside ResNet-50-FPN Mask R-CNN.

Examples:
    python tools/analyze_complexity.py
    python tools/analyze_complexity.py --accuracy A=73.0,B=71.1,C=69.6,D=66.3 --json out.json
    python tools/analyze_complexity.py --accuracy-from output/classifier_AttoNet-D/results.json
    python tools/analyze_complexity.py --config-file configs/atto_maskrcnn_voc.yaml \
        --image-size 512 683 MODEL.ATTONET.VARIANT D
"""

import argparse
import json
import logging
import os
import sys
import warnings

import torch

import atto_detectron  # noqa: F401  (registers the AttoNet backbones)
from atto_detectron.analysis.report import (
    complexity_report,
    format_report,
    parse_accuracies,
    read_accuracies,
    read_accuracy_file,
)
from atto_detectron.engine import parse_args_any_order
from atto_detectron.model_zoo import get_config_file


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-file",
        default=get_config_file("atto_maskrcnn_voc.yaml"),
        metavar="FILE",
        help="Mask R-CNN config to measure (default: configs/atto_maskrcnn_voc.yaml)",
    )
    parser.add_argument(
        "--baseline-config",
        default=None,
        metavar="FILE",
        help="ResNet-50-FPN Mask R-CNN config (default: Detectron2's model-zoo "
        "mask_rcnn_R_50_FPN_3x with the same number of classes)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=[800, 1067],
        metavar=("H", "W"),
        help="input image size for the Mask R-CNN comparison (default: 800 1067, a 4:3 "
        "VOC image at the configs' test size)",
    )
    parser.add_argument(
        "--accuracy",
        default="",
        metavar="NAME=TOP1,...",
        help="top-1 accuracies in percent (e.g. A=73.0,MobileNet-V1=64.52) to compute "
        "NetScore from the measured parameters and mult-adds",
    )
    parser.add_argument(
        "--accuracy-from",
        action="append",
        default=[],
        metavar="RESULTS_JSON",
        help="results.json of tools/train_classifier.py: its model's top-1 (repeatable). "
        "NetScore then combines it with this report's 224x224, 51-class complexity",
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs that modify the --config-file config",
    )
    return parser


def main(argv=None):
    parser = get_parser()
    args = parse_args_any_order(parser, argv)
    if min(args.image_size) < 32:
        parser.error(f"--image-size {' '.join(map(str, args.image_size))}: H and W are >= 32")
    logging.basicConfig(level=logging.WARNING)
    # Raised inside Detectron2's anchor generator while tracing; harmless.
    warnings.filterwarnings("ignore", message="torch.meshgrid")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        accuracies = parse_accuracies(args.accuracy)
        from_files = read_accuracies(args.accuracy_from)
    except ValueError as e:
        sys.exit(f"error: {e}")
    both = sorted(set(accuracies) & set(from_files))
    if both:
        sys.exit(f"error: top-1 of {', '.join(both)} given by both --accuracy and --accuracy-from")
    accuracies.update(from_files)
    for path in args.accuracy_from:
        name, _, record = read_accuracy_file(path)
        size, classes = record.get("image_size"), record.get("num_classes")
        if (size, classes) != (224, 51):
            print(
                f"note: {path}: {name}'s top-1 was measured at {size}x{size} on {classes} "
                f"classes; the NetScore below uses the 224x224, 51-class complexity",
                file=sys.stderr,
            )
    report = complexity_report(
        args.config_file,
        args.baseline_config,
        image_size=tuple(args.image_size),
        accuracies=accuracies,
        detection_opts=args.opts,
    )
    print(format_report(report))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")


def cli(argv=None):
    """The command line."""
    main(argv)

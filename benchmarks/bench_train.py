#!/usr/bin/env python
"""
Training speed (iterations per second) and peak training memory of Atto-MaskRCNN
(AttoNet-A..D) and ResNet-50-FPN Mask R-CNN, side by side, across input sizes.

    python -m benchmarks.bench_train            # full run: 512 and 800, 5 timed iterations
    python -m benchmarks.bench_train --quick    # shortest edge 320, 2 timed iterations

One iteration is what Detectron2's SimpleTrainer does: forward with losses on a batch,
backward, SGD step. Every model gets the same synthetic batch (noise images with
box-shaped instance masks), the same thread count, the configs' own training settings
(RPN and ROI sampling, norms), random initial weights; warm-up iterations are excluded
and the models' timed iterations alternate round by round. Peak memory comes from a
fresh process per model. Writes train.json and train.png to --output-dir.
"""

import argparse
import logging
import os
import sys
import warnings

import torch

from atto_detectron.analysis.complexity import count_parameters
from atto_detectron.analysis.detection import detection_complexity
from atto_detectron.config import load_config
from benchmarks.common import (
    MODELS,
    add_common_arguments,
    add_ratios,
    apply_quick,
    find_results,
    format_table,
    image_size,
    machine_info,
    plot_report,
    read_accuracy,
    setup_process,
    timing_entry,
    write_json,
)
from benchmarks.engines import (
    build_benchmark_model,
    make_train_step,
    measure_peak_memory,
    synthetic_training_batch,
    time_interleaved,
)

MEMORY_KEY = "peak_above_base_mb"

DEFAULT_SIZES = (512, 800)
QUICK = {"sizes": [320], "repeats": 2, "warmup": 1}


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, DEFAULT_SIZES, repeats=5)
    parser.add_argument("--batch-size", type=int, default=2, help="images per iteration")
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=1,
        help="fresh processes per memory figure; the median is kept (default 1)",
    )
    parser.add_argument(
        "--no-mult-adds", action="store_true", help="skip counting (inference) mult-adds"
    )
    parser.add_argument(
        "--results",
        nargs="*",
        default=[],
        metavar="NAME=FILE",
        help="results.json of trained models for the accuracy plot",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick check: shortest edge 320, 1 warm-up and 2 timed iterations "
        "(explicit --sizes/--repeats/--warmup still apply)",
    )
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = get_parser().parse_args(argv)
    if args.quick:
        apply_quick(args, argv, QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger = logging.getLogger("bench_train")
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    setup_process(args)
    accuracy_files = find_results(args.models, args.results)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    machine = machine_info(args.threads, args.allocator)

    results = {}
    for short in args.sizes:
        size = image_size(short, args.aspect)
        steps = {}
        for name in args.models:
            for device in devices:
                cfg, model = build_benchmark_model(
                    MODELS[name], args.opts, device=device, fixed_workload=False
                )
                results.setdefault(
                    name,
                    {
                        "config": os.path.relpath(MODELS[name]),
                        "params": count_parameters(model),
                        "sizes": {},
                    },
                )
                batch = synthetic_training_batch(
                    args.batch_size, size, cfg.MODEL.ROI_HEADS.NUM_CLASSES, device=device
                )
                key = "train" if device == "cpu" else f"train@{device}"
                steps[(name, key)] = make_train_step(model, batch)
        logger.info(f"timing training iterations at shortest edge {short}")
        seconds = time_interleaved(steps, warmup=args.warmup, repeats=args.repeats)
        for name in args.models:
            entry = {"image_size": size, "batch_size": args.batch_size}
            entry.update(timing_entry(seconds, name))
            entry["iterations_per_s"] = {
                key: 1 / stats["median"] for key, stats in entry["latency_s"].items()
            }
            if not args.no_mult_adds:
                complexity = detection_complexity(
                    load_config(MODELS[name], args.opts, device="cpu"), tuple(size)
                )
                entry["mult_adds"] = complexity["mult_adds"]
            if not args.no_memory:
                logger.info(f"peak training memory of {name} at {short} (fresh process)")
                entry["memory"] = {
                    "train": measure_peak_memory(
                        MODELS[name],
                        size,
                        mode="train",
                        opts=args.opts,
                        threads=args.threads,
                        allocator=args.allocator,
                        batch_size=args.batch_size,
                        repeats=args.memory_repeats,
                    )
                }
            results[name]["sizes"][str(short)] = entry
        del steps

    add_ratios(results, MEMORY_KEY, args.baseline)
    accuracy = {name: read_accuracy(path) for name, path in accuracy_files.items()}
    report = {
        "machine": machine,
        "settings": {
            "baseline": args.baseline,
            "sizes": args.sizes,
            "aspect": args.aspect,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "opts": args.opts,
            "iteration": "forward with losses, backward, SGD step on one synthetic batch",
            "memory": "resident high-water mark of a fresh process during one iteration "
            "after a warm-up one, minus its resident memory after imports",
            "mult_adds": "of one inference at the fixed test workload (for reference)",
        },
        "results": results,
        "accuracy": {n: {"file": accuracy_files[n], **(a or {})} for n, a in accuracy.items()},
    }
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    json_path = os.path.join(args.output_dir, "train.json")
    png_path = os.path.join(args.output_dir, "train.png")
    write_json(json_path, report)
    plot_report(
        results,
        accuracy,
        png_path,
        args.sizes,
        engines=["train"],
        time_label=f"CPU time per training iteration ({args.batch_size} images)",
        memory_engine="train",
        memory_key=MEMORY_KEY,
        memory_label="Peak training memory above imports",
    )
    print(format_table(results, args.sizes, MEMORY_KEY, time_label="ms per iteration"))
    print(f"wrote {json_path} and {png_path}")
    return report


if __name__ == "__main__":
    main()

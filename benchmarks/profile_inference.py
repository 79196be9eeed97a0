#!/usr/bin/env python
"""
Where the inference time of each model goes: per part of the Mask R-CNN (backbone, FPN,
RPN, ROIAlign, box and mask heads, box NMS, mask pasting), per layer role inside the
backbone, and per operator (torch.profiler), at the benchmark's fixed workload.

    python -m benchmarks.profile_inference --models AttoNet-A R50-FPN --sizes 800
    python -m benchmarks.profile_inference --engines pytorch pytorch-fused-cl --sizes 800

Part times come from forward hooks (each moment goes to the innermost part running);
they are medians over --repeats runs, interleaved across models and engines as in
bench_inference.py. Writes profile.json to --output-dir.
"""

import argparse
import logging
import os
import statistics
import sys
import warnings
from collections import OrderedDict, defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from atto_detectron.deploy import image_tensor, synthetic_image
from benchmarks.common import (
    MODELS,
    add_common_arguments,
    image_size,
    machine_info,
    setup_process,
    write_json,
)
from benchmarks.engines import build_benchmark_model, make_predictor
from benchmarks.roofline_model import PartTimer

# Part -> modules (names in a GeneralizedRCNN) whose forward it times. Each moment goes
# to the innermost part running (benchmarks.roofline_model.PartTimer): the
# backbone's bottom-up network is "backbone", the rest of the backbone "FPN", the ROI
# heads outside their poolers, heads and predictor "box NMS + glue".
PROFILE_PARTS = OrderedDict(
    [
        ("backbone", ["backbone.bottom_up"]),
        ("FPN", ["backbone"]),
        ("RPN", ["proposal_generator"]),
        ("box ROIAlign", ["roi_heads.box_pooler"]),
        ("box head", ["roi_heads.box_head"]),
        ("box predictor", ["roi_heads.box_predictor"]),
        ("mask ROIAlign", ["roi_heads.mask_pooler"]),
        ("mask head", ["roi_heads.mask_head"]),
        ("box NMS + glue", ["roi_heads"]),
    ]
)
# Everything outside those modules.
REST = "post-processing (paste masks) + preprocessing"
PYTORCH_ENGINES = ("pytorch", "pytorch-fused", "pytorch-fused-cl")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, sizes=(800,), repeats=3)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["pytorch"],
        choices=PYTORCH_ENGINES,
        help="PyTorch engines to profile (hooks need the PyTorch modules)",
    )
    parser.add_argument("--top", type=int, default=12, help="operators to list per model")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time parts by wall clock or by the process's CPU time (steadier on a shared "
        "machine; equal to the computing time with --threads 1)",
    )
    return parser


class ProfileTimer:
    """
    The time of each part of a GeneralizedRCNN (:data:`PROFILE_PARTS`, see
    :class:`~benchmarks.roofline_model.PartTimer`: wall time, or the process's
    CPU time with ``clock="cpu"``; with one thread, the time the part computed,
    whatever else the machine runs) and, inside the backbone, per layer role.
    """

    def __init__(self, model, clock: str = "wall"):
        self.parts = PartTimer(model, PROFILE_PARTS, REST, clock)
        self.clock = self.parts.clock
        self.layer_seconds = defaultdict(float)
        self._start = {}
        # Inside the backbone, by layer role: convs by their name in the block
        # ("conv compression", "conv shortcut", ...; ResNet: "conv conv1".."conv conv3")
        # and norms that are modules of their own (AttoNet's pre-activation BN).
        for name, module in model.backbone.bottom_up.named_modules():
            role = name.rsplit(".", 1)[-1]
            if isinstance(module, torch.nn.Conv2d):
                self._hook(module, f"conv {role}")
            elif role.endswith("norm") and not name.endswith(".norm"):
                self._hook(module, role)

    def _hook(self, module, key):
        def pre(module, inputs):
            self._start[(key, id(module))] = self.clock()

        def post(module, inputs, outputs):
            self.layer_seconds[key] += self.clock() - self._start[(key, id(module))]

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def run(self, predict, image):
        """Seconds per part of one ``predict(image)`` and per layer role in the backbone."""
        self.layer_seconds.clear()
        parts = self.parts.run(predict, image)
        layers = OrderedDict(sorted(self.layer_seconds.items()))
        layers["rest (activations, additions, pooling)"] = parts["backbone"] - sum(
            self.layer_seconds.values()
        )
        return parts, layers


def _medians(samples):
    # Per key, the median over runs (the keys of every run are the same).
    return OrderedDict(
        (key, statistics.median(sample[key] for sample in samples)) for key in samples[0]
    )


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger = logging.getLogger("profile_inference")
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    setup_process(args)

    runs = OrderedDict()
    for name in args.models:
        _, model = build_benchmark_model(MODELS[name], args.opts)
        for engine in args.engines:
            image = image_tensor(synthetic_image(*image_size(args.sizes[0], args.aspect)))
            predict = make_predictor(model, engine, image)
            runs[(name, engine)] = (predict, ProfileTimer(predict.model, args.clock))

    report = {
        "machine": machine_info(args.threads, args.allocator),
        "opts": args.opts,
        "clock": args.clock,
        "profiles": {},
    }
    for short in args.sizes:
        image = image_tensor(synthetic_image(*image_size(short, args.aspect)))
        samples = defaultdict(list)
        for _ in range(args.warmup):
            for predict, _timer in runs.values():
                predict(image)
        for _ in range(args.repeats):
            for key, (predict, timer) in runs.items():
                samples[key].append(timer.run(predict, image))
        for (name, engine), (predict, _timer) in runs.items():
            parts = _medians([sample[0] for sample in samples[(name, engine)]])
            layers = _medians([sample[1] for sample in samples[(name, engine)]])
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                predict(image)
            operators = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
            top = [
                {"operator": e.key, "self_ms": e.self_cpu_time_total / 1000, "calls": e.count}
                for e in operators[: args.top]
            ]
            report["profiles"][f"{name}/{engine}/{short}"] = {
                "parts_s": parts,
                "backbone_layers_s": layers,
                "operators": top,
            }
            logger.info(f"{name} / {engine} at {short}")
            print(
                f"\n{name} / {engine}, shortest edge {short}: median of {args.repeats} runs "
                f"({args.clock} time, {args.threads} threads)"
            )
            for part, seconds in parts.items():
                share = 100 * seconds / parts["total"]
                print(f"  {part:48s} {seconds * 1000:8.1f} ms  {share:5.1f}%")
            print("  inside the backbone:")
            for layer, seconds in layers.items():
                share = 100 * seconds / parts["backbone"]
                print(f"    {layer:46s} {seconds * 1000:8.1f} ms  {share:5.1f}%")
            print("  top operators (self CPU time of one run):")
            for entry in top:
                print(f"    {entry['operator']:36s} {entry['self_ms']:8.1f} ms  x{entry['calls']}")
    os.makedirs(args.output_dir, exist_ok=True)
    path = os.path.join(args.output_dir, "profile.json")
    write_json(path, report)
    print(f"\nwrote {path}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])

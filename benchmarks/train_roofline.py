#!/usr/bin/env python
"""
A roofline of one training iteration on CPU, per phase (forward with losses, backward,
optimizer step): the FLOPs (torch's FlopCounterMode: convolutions and matrix products,
forward and backward), the bytes every aten operator reads and writes
(BytesCounterMode), the machine's fp32 GEMM peak and memory bandwidth at the same thread
count, measured in the same run, and how far each phase's measured time is from the
time those limits allow.

    python -m benchmarks.train_roofline      # one of `make demo`'s processes: 1 thread, 2 images
    python -m benchmarks.train_roofline --from-json docs/results/train_roofline.json  # docs only

Every config trains on the same synthetic batch (noise images with box-shaped instance
masks, benchmarks.engines.synthetic_training_batch) from random weights, with its own
training settings (RPN and ROI sampling, norms); the configs' iterations are timed round
by round, interleaved. Writes train_roofline.json to --output-dir and its tables to
docs/ROOFLINE.md, between <!-- train-roofline:begin --> and <!-- train-roofline:end -->.
"""

import argparse
import logging
import os
import shlex
import statistics
import sys
from collections import OrderedDict

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from atto_detectron.analysis.formatting import format_number
from atto_detectron.deploy.allocator import ALLOCATORS
from benchmarks.common import (
    REPO_ROOT,
    ROOFLINE_DOC,
    describe_cpu,
    machine_info,
    setup_process,
    write_doc_section,
)
from benchmarks.engines import (
    PHASES,
    TrainingIteration,
    build_benchmark_model,
    synthetic_training_batch,
)
from benchmarks.roofline import (
    add_docs_arguments,
    add_limit_arguments,
    best_limits,
    measure_machine,
    measure_or_regenerate,
)
from benchmarks.roofline_model import TOTAL, BytesCounterMode, roofline_rows

DOC_SECTION = "train-roofline"
JSON_NAME = "train_roofline.json"
# `make demo`'s model, and ResNet-50-FPN Mask R-CNN with the same schedule.
DEFAULT_CONFIGS = (
    "configs/synth/atto_maskrcnn_synth.yaml",
    "configs/synth/mask_rcnn_R_50_FPN_synth.yaml",
)
# Operators listed per phase in the JSON, by bytes moved.
TOP_OPERATORS = 5


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-files",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        metavar="FILE",
        help="training configs to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--image-size",
        nargs=2,
        type=int,
        default=[192, 256],
        metavar=("H", "W"),
        help="size of the batch's images (default: %(default)s, a 4:3 image of the "
        "generated data, long side 256)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=2, help="images per iteration (default: %(default)s)"
    )
    parser.add_argument(
        "--instances", type=int, default=2, help="instances per image (default: %(default)s)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed iterations per config")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default: %(default)s, as each of `make demo`'s processes)",
    )
    parser.add_argument(
        "--allocator",
        choices=ALLOCATORS,
        default="default",
        help="glibc malloc as it starts (default; as tools/train_net.py runs) or keeping "
        "freed memory for reuse",
    )
    add_limit_arguments(parser)
    parser.add_argument(
        "--output-dir",
        default=os.path.join(REPO_ROOT, "output", "benchmarks", "train_roofline"),
        metavar="DIR",
        help="where train_roofline.json goes (default: output/benchmarks/train_roofline)",
    )
    add_docs_arguments(parser, DOC_SECTION, JSON_NAME, ROOFLINE_DOC)
    return parser


def conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    _output_padding,
    _groups,
    output_mask,
    out_shape=None,
) -> int:
    """
    FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight)
    costs what the forward convolution costs. torch 2.3's own formula counts the weight
    gradient of a grouped convolution ``groups`` times over (65x the forward for a
    depthwise 3x3 of 64 channels), which would make AttoNet's depthwise convolutions
    look like most of the backward pass.
    """
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    """torch's FlopCounterMode with :func:`conv_backward_flop` for convolution backward."""
    return FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop}
    )


def count_phases(iteration: TrainingIteration) -> "OrderedDict[str, dict]":
    """
    FLOPs (FlopCounterMode) and bytes read and written (BytesCounterMode) of each phase
    of one iteration: phase -> {"flop", "bytes", "operators" (the top operators by
    bytes)}.
    """
    flop_counters = {phase: flop_counter() for phase in PHASES}
    iteration.run(flop_counters)
    with BytesCounterMode(lambda: iteration.phase) as bytes_counter:
        iteration.run()
    counts = OrderedDict()
    for phase in PHASES:
        operators = sorted(bytes_counter.by_operator.get(phase, {}).items(), key=lambda kv: -kv[1])
        counts[phase] = {
            "flop": flop_counters[phase].get_total_flops(),
            "bytes": bytes_counter.bytes(phase),
            "operators": OrderedDict(operators[:TOP_OPERATORS]),
        }
    return counts


def phase_rows(counts, seconds, peak_flops: float, bandwidth: float) -> "OrderedDict":
    """
    :func:`~benchmarks.roofline_model.roofline_rows` of every phase and of the
    whole iteration (whose bound is the sum of the phases' bounds), each phase with its
    top operators.
    """
    parts = OrderedDict(
        (phase, {"mult_adds": count["flop"] / 2, "bytes": count["bytes"]})
        for phase, count in counts.items()
    )
    total_s = sum(seconds[phase] for phase in counts)
    rows = roofline_rows(parts, {**seconds, TOTAL: total_s}, peak_flops, bandwidth)
    for phase, count in counts.items():
        rows[phase]["operators"] = count["operators"]
    return rows


def _command(argv) -> str:
    return " ".join(["python", "-m", "benchmarks.train_roofline"] + [shlex.quote(a) for a in argv])


def run(args, argv) -> dict:
    """
    Measures the machine's limits before and after the configs (the better of the two
    counts), and each config's FLOPs, bytes and phase times.
    """
    logger = logging.getLogger("train_roofline")
    setup_process(args)
    machine = machine_info(args.threads, args.allocator)
    measurements = [measure_machine(args)]

    iterations, entries = OrderedDict(), OrderedDict()
    for config_file in args.config_files:
        name = os.path.splitext(os.path.basename(config_file))[0]
        cfg, model = build_benchmark_model(config_file, fixed_workload=False)
        batch = synthetic_training_batch(
            args.batch_size,
            tuple(args.image_size),
            cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            instances_per_image=args.instances,
        )
        iterations[name] = TrainingIteration(model, batch)
        entries[name] = {"config": os.path.relpath(config_file, REPO_ROOT)}
    for _ in range(args.warmup):
        for iteration in iterations.values():
            iteration.run()
    logger.info(f"timing {args.repeats} iterations of {', '.join(iterations)}, interleaved")
    samples = {name: [] for name in iterations}
    for _ in range(args.repeats):
        for name, iteration in iterations.items():
            samples[name].append(iteration.run())
    for name, iteration in iterations.items():
        counts = count_phases(iteration)
        entries[name]["seconds"] = {
            phase: [sample[phase] for sample in samples[name]] for phase in PHASES
        }
        entries[name]["counts"] = counts
    measurements.append(measure_machine(args))
    limits = best_limits(measurements)
    peak, bandwidth = limits["gemm"]["flop_per_s"], limits["memory"]["bytes_per_s"]
    for entry in entries.values():
        medians = {phase: statistics.median(entry["seconds"][phase]) for phase in PHASES}
        entry["phases"] = phase_rows(entry.pop("counts"), medians, peak, bandwidth)
    return {
        "command": _command(argv),
        "machine": machine,
        "limits": limits,
        "settings": {
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "instances_per_image": args.instances,
            "repeats": args.repeats,
            "warmup": args.warmup,
        },
        "models": entries,
    }


def _operator(row) -> str:
    operators = row.get("operators") or {}
    if not operators:
        return ""
    name, moved = next(iter(operators.items()))
    return f"{name} {100 * moved / row['bytes']:.0f}%"


def format_phase_table(rows) -> str:
    header = [
        "phase",
        "GFLOP",
        "MB moved",
        "FLOP / byte",
        "compute bound (ms)",
        "memory bound (ms)",
        "bound by",
        "measured (ms)",
        "x from roofline",
        "most bytes in",
    ]
    lines = ["| " + " | ".join(header) + " |", "|:--|" + "--:|" * 5 + ":--|--:|--:|:--|"]
    for phase, row in rows.items():
        label = f"**{phase}**" if phase == TOTAL else phase
        lines.append(
            "| "
            + " | ".join(
                [
                    label,
                    format_number(row["flop"], 1e9, 2),
                    format_number(row["bytes"], 1e6, 0),
                    format_number(row["flop_per_byte"]),
                    format_number(row["compute_bound_s"], 1e-3),
                    format_number(row["memory_bound_s"], 1e-3),
                    row["bound_by"] or "",
                    format_number(row["measured_s"], 1e-3),
                    format_number(row["x_from_roofline"]),
                    _operator(row),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def format_markdown(report) -> str:
    """The docs section of a train_roofline.json."""
    machine, limits, settings = report["machine"], report["limits"], report["settings"]
    peak, bandwidth = limits["gemm"]["flop_per_s"], limits["memory"]["bytes_per_s"]
    load = machine.get("load_average_at_start")
    load = f", load average {load[0]:.1f} at the start" if load else ""
    height, width = settings["image_size"]
    lines = [
        "## Roofline of a training iteration on CPU",
        "",
        "Written by `benchmarks/train_roofline.py` from its `train_roofline.json`:",
        "",
        f"```bash\n{report['command']}\n```",
        "",
        f"Machine: {describe_cpu(machine)}, {machine['threads']} thread(s) "
        f"({machine['cpu_count']} cores), torch {machine['torch']}, "
        f"allocator {machine['allocator']}{load}. Its "
        f"limits at that thread count, measured before and after the models (the better of "
        f"the two): fp32 GEMM peak **{peak / 1e9:.1f} GFLOP/s**, memory bandwidth "
        f"**{bandwidth / 1e9:.1f} GB/s**.",
        "",
        f"One iteration: {settings['batch_size']} images of {height} x {width} with "
        f"{settings['instances_per_image']} instances each, random weights, each config's "
        "own training settings; forward with losses, backward (zero_grad included), SGD "
        "step. FLOPs: torch's `FlopCounterMode` (convolutions and matrix products, forward "
        "and backward; a convolution's backward counted as its forward per gradient, "
        "grouped ones included); bytes: what every aten operator reads and writes "
        "(`BytesCounterMode`); compute bound = FLOPs / GEMM peak; memory bound = bytes / "
        "bandwidth; the bound is the larger; measured: median of "
        f"{settings['repeats']} iterations, interleaved with the other configs'; x from "
        "roofline = measured / bound. The total's bound is the sum of the phases' bounds.",
    ]
    for name, entry in report["models"].items():
        lines += ["", f"**{name}** (`{entry['config']}`)", "", format_phase_table(entry["phases"])]
    return "\n".join(lines)


def write_docs(report, path: str) -> str:
    return write_doc_section(DOC_SECTION, format_markdown(report), path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    return measure_or_regenerate(args, argv, run, JSON_NAME, write_docs)


if __name__ == "__main__":
    main()

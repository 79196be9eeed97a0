#!/usr/bin/env python
"""
A roofline for each part of the Mask R-CNN models at CPU inference: per backbone stage,
FPN, RPN, box head, mask head and post-processing, the mult-adds, the bytes moved, the
time the machine's limits allow (its fp32 GEMM peak and memory bandwidth, measured in
the same run), whether compute or memory bounds it, and how far the measured time is
from that bound, at the benchmark's fixed workload.

    python -m benchmarks.roofline --models AttoNet-A R50-FPN --sizes 800 --repeats 3
    python -m benchmarks.roofline --from-json output/benchmarks/roofline.json  # docs only

Mult-adds come from fvcore, bytes from one forward pass under
benchmarks.roofline_model.BytesCounterMode, part times from forward hooks
(PartTimer; medians over --repeats runs, interleaved across models as in
bench_inference.py). Writes roofline.json to --output-dir and its tables to
docs/ROOFLINE.md, between <!-- roofline:begin --> and <!-- roofline:end -->.
"""

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import warnings
from collections import OrderedDict, defaultdict

from atto_detectron.analysis.formatting import format_number
from atto_detectron.deploy import detector_inputs, image_tensor, synthetic_image
from benchmarks.common import (
    BENCHMARKS_DOC,
    MODELS,
    REPO_ROOT,
    ROOFLINE_DOC,
    add_common_arguments,
    describe_cpu,
    image_size,
    machine_info,
    setup_process,
    write_doc_section,
    write_json,
)
from benchmarks.engines import ENGINES, build_benchmark_model, make_predictor
from benchmarks.roofline_model import (
    POST_PROCESSING,
    PartTimer,
    detector_part_counts,
    detector_parts,
    measure_gemm_flops,
    measure_memory_bandwidth,
    roofline_rows,
)

DOC_SECTION = "roofline"
# Forward hooks need the PyTorch modules.
PYTORCH_ENGINES = tuple(engine for engine in ENGINES if engine.startswith("pytorch"))
# Operators listed per part in the JSON, by bytes moved.
TOP_OPERATORS = 5


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, sizes=(800,), repeats=3)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["pytorch"],
        choices=PYTORCH_ENGINES,
        help="PyTorch engines to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="time parts by wall clock or by the process's CPU time (default: %(default)s)",
    )
    add_limit_arguments(parser)
    add_docs_arguments(parser, DOC_SECTION, "roofline.json", ROOFLINE_DOC)
    return parser


def add_limit_arguments(parser):
    """The options of :func:`measure_machine`: GEMM size, bandwidth array size, repeats."""
    parser.add_argument(
        "--gemm-size",
        type=int,
        default=4096,
        metavar="N",
        help="the GEMM peak is that of an N x N by N x N fp32 torch.mm (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-mb",
        type=int,
        default=None,
        metavar="MB",
        help="size of each array of the bandwidth measurement (default: 8 times the "
        "largest CPU cache, at least 256 MB)",
    )
    parser.add_argument(
        "--peak-repeats",
        type=int,
        default=5,
        help="runs of the GEMM and bandwidth measurements, best taken (default: %(default)s)",
    )


def add_docs_arguments(parser, section: str, json_name: str, docs: str = BENCHMARKS_DOC):
    """--docs, --no-docs and --from-json of a script that writes docs section ``section``."""
    parser.add_argument(
        "--docs",
        default=docs,
        metavar="FILE",
        help=f"the Markdown file whose {section} section is rewritten (default: "
        f"docs/{os.path.basename(docs)})",
    )
    parser.add_argument("--no-docs", action="store_true", help="do not write --docs")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help=f"measure nothing: rewrite --docs from a {json_name} of an earlier run",
    )


def measure_or_regenerate(args, argv, run, json_name: str, write_docs) -> dict:
    """
    The report of ``run(args, argv)``, written to ``args.output_dir/json_name`` (or,
    with --from-json, the report of an earlier run), and its docs section written
    unless --no-docs.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f, object_pairs_hook=OrderedDict)
    else:
        report = run(args, argv)
        path = os.path.join(args.output_dir, json_name)
        write_json(path, report)
        print(f"\nwrote {path}")
    if not args.no_docs:
        print(f"wrote {write_docs(report, args.docs)}")
    return report


def _medians(samples):
    # Per key, the median over runs (the keys of every run are the same).
    return OrderedDict(
        (key, statistics.median(sample[key] for sample in samples)) for key in samples[0]
    )


def measure_machine(args) -> dict:
    """The fp32 GEMM peak and the memory bandwidth at the run's thread count."""
    array_bytes = args.stream_mb * 1024**2 if args.stream_mb else None
    return {
        "gemm": measure_gemm_flops(args.gemm_size, args.peak_repeats),
        "memory": measure_memory_bandwidth(array_bytes, args.peak_repeats),
    }


def best_limits(measurements) -> dict:
    """
    The best GEMM peak and bandwidth of several :func:`measure_machine` results (load
    from elsewhere only lowers them), with the figures of every measurement.
    """
    gemm = max((m["gemm"] for m in measurements), key=lambda g: g["flop_per_s"])
    memory = max((m["memory"] for m in measurements), key=lambda m: m["bytes_per_s"])
    return {
        "gemm": gemm,
        "memory": memory,
        "flop_per_s_measured": [m["gemm"]["flop_per_s"] for m in measurements],
        "bytes_per_s_measured": [m["memory"]["bytes_per_s"] for m in measurements],
    }


def _log_limits(logger, when, limits):
    logger.info(
        f"{when}: GEMM peak {limits['gemm']['flop_per_s'] / 1e9:.1f} GFLOP/s, "
        f"bandwidth {limits['memory']['bytes_per_s'] / 1e9:.1f} GB/s"
    )


def _command(argv) -> str:
    return " ".join(["python", "-m", "benchmarks.roofline"] + [shlex.quote(a) for a in argv])


def run(args, argv) -> dict:
    """
    Measures the machine's limits before and after the models (the best of the two
    counts), and each model's mult-adds, bytes and part times per size.
    """
    logger = logging.getLogger("roofline")
    setup_process(args)
    report = {
        "command": _command(argv),
        "machine": machine_info(args.threads, args.allocator),
        "opts": args.opts,
        "clock": args.clock,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "limits": None,
        "rooflines": OrderedDict(),
    }
    measured = [measure_machine(args)]
    _log_limits(logger, "machine before the models", measured[0])

    runs = OrderedDict()
    for name in args.models:
        cfg, model = build_benchmark_model(MODELS[name], args.opts)
        workload = {
            "proposals": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
            "detections": cfg.TEST.DETECTIONS_PER_IMAGE,
        }
        for engine in args.engines:
            image = image_tensor(synthetic_image(*image_size(args.sizes[0], args.aspect)))
            predict = make_predictor(model, engine, image)
            parts = detector_parts(predict.model)
            timer = PartTimer(predict.model, parts, POST_PROCESSING, args.clock)
            runs[(name, engine)] = (predict, timer, workload)

    results = []
    for short in args.sizes:
        image = image_tensor(synthetic_image(*image_size(short, args.aspect)))
        counts = {}
        for (name, engine), (predict, _timer, _workload) in runs.items():
            logger.info(f"{name} / {engine} at {short}: counting mult-adds and bytes")
            counts[(name, engine)] = detector_part_counts(predict.model, detector_inputs(image))
        logger.info(f"timing at {short}")
        samples = defaultdict(list)
        for _ in range(args.warmup):
            for predict, _timer, _workload in runs.values():
                predict(image)
        for _ in range(args.repeats):
            for key, (predict, timer, _workload) in runs.items():
                samples[key].append(timer.run(predict, image))
        results.append((short, counts, samples))

    measured.append(measure_machine(args))
    _log_limits(logger, "machine after the models", measured[1])
    limits = report["limits"] = best_limits(measured)
    peak, bandwidth = limits["gemm"]["flop_per_s"], limits["memory"]["bytes_per_s"]
    for short, counts, samples in results:
        for (name, engine), (_predict, _timer, workload) in runs.items():
            seconds = _medians(samples[(name, engine)])
            rows = roofline_rows(counts[(name, engine)], seconds, peak, bandwidth)
            for part, row in rows.items():
                count = counts[(name, engine)][part]
                row["bytes_read"] = count["bytes_read"]
                row["bytes_written"] = count["bytes_written"]
                row["top_operators_bytes"] = OrderedDict(
                    list(count["operators"].items())[:TOP_OPERATORS]
                )
            report["rooflines"][f"{name}/{engine}/{short}"] = {
                "model": name,
                "config": os.path.relpath(MODELS[name], REPO_ROOT),
                "engine": engine,
                "short_edge": short,
                "image_size": image_size(short, args.aspect),
                **workload,
                "parts": rows,
                "seconds": {part: [s[part] for s in samples[(name, engine)]] for part in seconds},
            }
            print(f"\n{name} / {engine}, shortest edge {short}")
            print(format_parts_table(rows))
    return report


def _bound_by(row) -> str:
    share = row.get("memory_bound_share")
    if share is None:
        return row["bound_by"] or "-"
    return f"{row['bound_by']} ({100 * (share if row['bound_by'] == 'memory' else 1 - share):.0f}%)"


def _top_operator(row) -> str:
    operators = row.get("top_operators_bytes") or {}
    if not operators or not row["bytes"]:
        return ""
    name, moved = next(iter(operators.items()))
    return f"{name} {100 * moved / row['bytes']:.0f}%"


def format_parts_table(rows) -> str:
    """One model's roofline as a Markdown table, a row per part and the total."""
    lines = [
        "| part | mult-adds (G) | MB moved | FLOP / byte | compute bound (ms) | memory bound "
        "(ms) | bound by | measured (ms) | x from roofline | most bytes in |",
        "|:--|--:|--:|--:|--:|--:|:--|--:|--:|:--|",
    ]
    for part, row in rows.items():
        label = f"**{part}**" if part == "total" else part
        cells = [
            label,
            format_number(row["mult_adds"], 1e9, 2),
            format_number(row["bytes"], 1e6, 0),
            format_number(row["flop_per_byte"], 1, 1),
            format_number(row["compute_bound_s"], 1e-3),
            format_number(row["memory_bound_s"], 1e-3),
            _bound_by(row),
            format_number(row["measured_s"], 1e-3),
            format_number(row["x_from_roofline"], 1, 1),
            _top_operator(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_comparison_table(entries) -> str:
    """Per part, each model's measured time and its distance from the roofline."""
    names = [entry["model"] for entry in entries]
    header = "| part | " + " | ".join(f"{n} (ms) | x from roofline" for n in names) + " |"
    lines = [header, "|:--|" + "--:|--:|" * len(names)]
    parts = list(OrderedDict((p, None) for entry in entries for p in entry["parts"]))
    for part in parts:
        cells = [f"**{part}**" if part == "total" else part]
        for entry in entries:
            row = entry["parts"].get(part)
            cells += [
                format_number(row and row["measured_s"], 1e-3),
                format_number(row and row["x_from_roofline"], 1, 1),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(report) -> str:
    """The docs section of a roofline.json: the machine, its limits and the tables."""
    machine, limits = report["machine"], report["limits"]
    gemm, memory = limits["gemm"], limits["memory"]
    peak, bandwidth = gemm["flop_per_s"], memory["bytes_per_s"]
    clock = "wall" if report.get("clock", "wall") == "wall" else "CPU"
    load = machine.get("load_average_at_start")
    load = f", load average {load[0]:.1f} at the start" if load else ""
    lines = [
        "## Roofline of each part at CPU inference",
        "",
        "Written by `benchmarks/roofline.py` from its `roofline.json`:",
        "",
        f"```bash\n{report['command']}\n```",
        "",
        f"Machine: {describe_cpu(machine)}, {machine['threads']} threads ({machine['cpu_count']} "
        f"cores), torch {machine['torch']}, allocator {machine['allocator']}{load}. Its limits, "
        f"measured before and after the models at the same thread count (the better of the "
        f"two): fp32 GEMM peak "
        f"**{peak / 1e9:.1f} GFLOP/s** (`torch.mm` of {gemm['size']} x {gemm['size']} "
        f"matrices, best of {len(gemm['seconds'])}); memory bandwidth "
        f"**{bandwidth / 1e9:.1f} GB/s** (the better of a STREAM-like copy, "
        f"{memory['copy_bytes_per_s'] / 1e9:.1f} GB/s, and add, "
        f"{memory['add_bytes_per_s'] / 1e9:.1f} GB/s, over "
        f"{memory['array_bytes'] / 1024**2:.0f} MB arrays, bytes read and written per "
        f"second). A part needs more than {peak / bandwidth:.1f} FLOP per byte moved to be "
        f"bound by compute rather than memory.",
        "",
        "Per part: mult-adds as fvcore counts them (convolutions and matrix products, "
        "`atto_detectron.analysis`); bytes moved, what every aten operator of one "
        "inference reads and writes (weights and activations, each tensor once per "
        "operator, views free, in-place operators read and write their target, indexed "
        "writes only the indexed elements; `BytesCounterMode`); compute bound = 2 x "
        "mult-adds / GEMM peak; memory bound = bytes / bandwidth; the bound is the larger; "
        "measured: median "
        f"{clock} time of {report['repeats']} runs (forward hooks, each moment counted "
        "for the innermost part running); x from roofline = measured / bound. "
        "Backbone stages include their norms and activations, the stem also what the "
        "bottom-up network does outside its stages (e.g. a change of the input's memory "
        "layout); box and mask heads include their ROIAlign; post-processing is "
        "preprocessing (normalization, padding), box NMS and score filtering, and pasting "
        "the masks into the image. The total's "
        "bound is the sum of the parts' bounds (bound by: the limit of most of it). "
        "Below 1x, a part's tensors stayed in cache from one operator to the next; far "
        "above, the part runs neither at the GEMM peak nor at memory speed (small or "
        "thin operators, overheads). Random weights, the benchmark's fixed workload: "
        "every model runs its configs' maxima of proposals and detections on the same "
        "boxes.",
    ]
    groups = OrderedDict()
    for entry in report["rooflines"].values():
        groups.setdefault((entry["short_edge"], entry["engine"]), []).append(entry)
    for (short, engine), entries in groups.items():
        height, width = entries[0]["image_size"]
        lines += [
            "",
            f"### Shortest edge {short} ({height} x {width}), {engine}",
            "",
            format_comparison_table(entries),
        ]
        for entry in entries:
            lines += [
                "",
                f"**{entry['model']}** (`{entry['config']}`, {entry['proposals']} "
                f"proposals, {entry['detections']} detections)",
                "",
                format_parts_table(entry["parts"]),
            ]
    return "\n".join(lines)


def write_docs(report, path: str) -> str:
    return write_doc_section(DOC_SECTION, format_markdown(report), path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    return measure_or_regenerate(args, argv, run, "roofline.json", write_docs)


if __name__ == "__main__":
    main()

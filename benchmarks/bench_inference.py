#!/usr/bin/env python
"""
Inference latency, peak memory and mult-adds of Atto-MaskRCNN (AttoNet-A..D) and
ResNet-50-FPN Mask R-CNN, side by side, across input sizes; ratios to R50.

    python -m benchmarks.bench_inference            # full run: 320..800, all engines
    python -m benchmarks.bench_inference --quick    # one size, PyTorch only, 2 repeats
    python -m benchmarks.bench_inference --from-json FILE --docs-section NAME  # docs only

Every model sees the same images, runs with the same thread count and does the same
work: random weights with the workload fixed as the complexity report fixes it
(the configs' maxima: 1000 proposals, 100 detections, the same boxes for every model;
see benchmarks.engines). Latency is one image in, post-processed
detections with full-image masks out; warm-up runs are excluded and the timed runs of
all models alternate round by round. Peak memory comes from a fresh process per model
(resident high-water mark). Writes inference.json and inference.png to --output-dir.
"""

import argparse
import json
import logging
import os
import shlex
import sys
import warnings

import torch

from atto_detectron.analysis.complexity import count_parameters
from atto_detectron.analysis.detection import detection_complexity
from atto_detectron.config import load_config
from atto_detectron.deploy import image_tensor, synthetic_image
from atto_detectron.deploy.calibration import calibration_images
from benchmarks.common import (
    BENCHMARKS_DOC,
    MODELS,
    add_common_arguments,
    add_ratios,
    apply_quick,
    describe_cpu,
    find_results,
    format_table,
    image_size,
    machine_info,
    plot_report,
    read_accuracy,
    setup_process,
    timing_entry,
    write_doc_section,
    write_json,
)
from benchmarks.engines import (
    BENCHMARK_CALIBRATION_IMAGES,
    ENGINES,
    build_benchmark_model,
    make_predictor,
    measure_peak_memory,
    time_interleaved,
)

MEMORY_KEY = "inference_mb"

DEFAULT_SIZES = (320, 480, 640, 800)
DEFAULT_ENGINES = ENGINES
QUICK = {
    "sizes": [320],
    "repeats": 2,
    "warmup": 1,
    "engines": ["pytorch"],
    "memory_engines": ["pytorch"],
    "memory_repeats": 1,
}


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, DEFAULT_SIZES, repeats=5)
    parser.add_argument(
        "--engines",
        nargs="+",
        default=list(DEFAULT_ENGINES),
        choices=ENGINES,
        help="how the models run: PyTorch eager as built, with BN fused, fused + "
        "channels-last, traced TorchScript, ONNX in onnxruntime or OpenVINO, and that "
        "ONNX model quantized to INT8 for onnxruntime or (NNCF) OpenVINO, calibrated on "
        f"{BENCHMARK_CALIBRATION_IMAGES} training images of the config, or synthetic "
        "images where its dataset is absent (default: all)",
    )
    parser.add_argument(
        "--memory-engines",
        nargs="+",
        default=["pytorch", "pytorch-fused-cl"],
        choices=ENGINES,
        help="engines whose peak memory is measured (a process each)",
    )
    parser.add_argument(
        "--memory-repeats",
        type=int,
        default=3,
        help="fresh processes per memory figure; the median is kept (default 3)",
    )
    parser.add_argument(
        "--no-mult-adds", action="store_true", help="skip counting mult-adds per size"
    )
    parser.add_argument(
        "--results",
        nargs="*",
        default=[],
        metavar="NAME=FILE",
        help="results.json of trained models for the accuracy plot (default: "
        "output/<config name>/results.json where present)",
    )
    parser.add_argument(
        "--docs-section",
        metavar="NAME",
        help="also write the results as section NAME of --docs (none by default)",
    )
    parser.add_argument(
        "--docs",
        default=BENCHMARKS_DOC,
        metavar="FILE",
        help="the Markdown file of --docs-section (default: docs/BENCHMARKS.md)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure nothing: write --docs-section from an inference.json",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a quick check: shortest edge 320, PyTorch eager only, 1 warm-up, 2 repeats, "
        "one memory probe (explicit --sizes/--repeats/--engines/... still apply)",
    )
    return parser


def engine_key(engine: str, device: str) -> str:
    return engine if device == "cpu" else f"{engine}@{device}"


def int8_calibration(cfg, logger):
    """
    (images, description) for the INT8 engines: the config's training images, or None
    (make_predictor's synthetic images) where its dataset is not on this machine.
    """
    try:
        images = calibration_images(cfg, BENCHMARK_CALIBRATION_IMAGES)
    except ValueError as e:
        logger.warning(f"INT8 engines calibrate on synthetic images: {e}")
        return None, (
            f"{BENCHMARK_CALIBRATION_IMAGES} synthetic noise images at the largest size: "
            f"DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} is not available here"
        )
    return images, f"{len(images)} images of DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)}"


def measure_latency(args, logger):
    """Builds every (model, engine, device) and times them size by size, interleaved."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    sizes = [image_size(s, args.aspect) for s in args.sizes]
    images = {s: image_tensor(synthetic_image(*size)) for s, size in zip(args.sizes, sizes)}
    predictors, params, calibration = {}, {}, {}
    for name in args.models:
        for device in devices:
            engines = [e for e in args.engines if device == "cpu" or e.startswith("pytorch")]
            if not engines:
                continue
            cfg, model = build_benchmark_model(MODELS[name], args.opts, device=device)
            params[name] = count_parameters(model)
            sample = images[args.sizes[-1]].to(device)
            calibration_inputs = None
            if any(e.endswith("-int8") for e in engines):
                calibration_inputs, calibration[name] = int8_calibration(cfg, logger)
            for engine in engines:
                logger.info(f"preparing {name} / {engine_key(engine, device)}")
                predictors[(name, engine_key(engine, device))] = (
                    make_predictor(
                        model,
                        engine,
                        sample,
                        calibration=calibration_inputs,
                        calibration_source=calibration.get(name, ""),
                    ),
                    device,
                )
    timings = {}
    for short in args.sizes:
        logger.info(f"timing at shortest edge {short} ({len(predictors)} runs per round)")
        functions = {
            key: (lambda p=predict, d=device: p(images[short].to(d)))
            for key, (predict, device) in predictors.items()
        }
        timings[short] = time_interleaved(functions, warmup=args.warmup, repeats=args.repeats)
    return timings, params, dict(zip(args.sizes, sizes)), calibration


def collect(args, logger):
    timings, params, sizes, calibration = measure_latency(args, logger)
    results = {}
    for name in args.models:
        results[name] = {
            "config": os.path.relpath(MODELS[name]),
            "params": params[name],
            "sizes": {},
        }
        if name in calibration:
            results[name]["int8_calibration"] = calibration[name]
        for short in args.sizes:
            entry = {"image_size": sizes[short], **timing_entry(timings[short], name)}
            results[name]["sizes"][str(short)] = entry

    if not args.no_mult_adds:
        for name in args.models:
            for short in args.sizes:
                logger.info(f"counting mult-adds of {name} at {short}")
                complexity = detection_complexity(
                    load_config(MODELS[name], args.opts, device="cpu"), tuple(sizes[short])
                )
                results[name]["sizes"][str(short)]["mult_adds"] = complexity["mult_adds"]

    if not args.no_memory:
        runs = [(engine, "cpu") for engine in args.memory_engines]
        if torch.cuda.is_available():
            runs.append(("pytorch", "cuda"))
        for name in args.models:
            for short in args.sizes:
                memory = {}
                for engine, device in runs:
                    key = engine_key(engine, device)
                    logger.info(f"inference memory of {name} / {key} at {short} (fresh process)")
                    memory[key] = measure_peak_memory(
                        MODELS[name],
                        sizes[short],
                        engine,
                        opts=args.opts,
                        threads=args.threads,
                        allocator=args.allocator,
                        device=device,
                        repeats=args.memory_repeats,
                    )
                results[name]["sizes"][str(short)]["memory"] = memory
    return results


def check_targets(results, sizes, baseline):
    """
    The issue's targets at the largest size measured (800 in a full run): AttoNet-A (and
    AttoNet-A-fast when measured) >= 4x lower latency and >= 2x lower inference memory
    than R50-FPN, each engine against the same engine and best against best; AttoNet-D
    the fastest of the default models.
    """
    short = str(max(sizes))
    targets = {"shortest_edge": int(short)}
    base = results.get(baseline, {}).get("sizes", {}).get(short)
    for name in ("AttoNet-A", "AttoNet-A-fast"):
        entry = results.get(name, {}).get("sizes", {}).get(short)
        if not entry or not base:
            continue
        ratios = entry["ratio_to_baseline"]
        best = min(s["median"] for s in entry["latency_s"].values())
        base_best = min(s["median"] for s in base["latency_s"].values())
        targets[name] = {
            "latency_ratio_same_engine": ratios["latency"],
            "latency_ratio_best_vs_best": base_best / best,
            "latency_4x": base_best / best >= 4,
            "memory_ratio_same_engine": ratios["memory"],
            "memory_2x": bool(ratios["memory"]) and min(ratios["memory"].values()) >= 2,
        }
    best = {
        name: min(s["median"] for s in record["sizes"][short]["latency_s"].values())
        for name, record in results.items()
        if name != "AttoNet-A-fast"
    }
    targets["fastest"] = min(best, key=best.get)
    targets["D_fastest"] = targets["fastest"] == "AttoNet-D"
    return targets


def format_markdown(report) -> str:
    """The docs section of an inference.json: the command, the machine, the table, the targets."""
    machine, settings = report["machine"], report["settings"]
    load = machine.get("load_average_at_start")
    load = f", load average {load[0]:.1f} at the start" if load else ""
    lines = [
        "Written by `benchmarks/bench_inference.py` from its `inference.json`:",
        "",
        f"```bash\n{report.get('command', 'python -m benchmarks.bench_inference')}\n```",
        "",
        f"Machine: {describe_cpu(machine)}, {machine['threads']} threads ({machine['cpu_count']} "
        f"cores), torch {machine['torch']}, allocator {machine['allocator']}{load}. "
        f"Latency: {settings['latency']}; {settings['repeats']} timed rounds after "
        f"{settings['warmup']} warm-up. Workload: {settings['workload']}. Memory: "
        f"{settings['memory']}. \"baseline / model\" is {settings['baseline']}'s figure "
        "over the model's (median over median; paired: the median of the per-round ratios).",
        "",
        format_table(report["results"], settings["sizes"], MEMORY_KEY),
    ]
    targets = format_targets(report)
    if targets:
        lines += ["", targets]
    return "\n".join(lines)


def format_targets(report, name: str = "AttoNet-A") -> str:
    """
    The CPU targets for ``name`` against the baseline, computed from the report at its
    largest size: eager >= 4x, best engine against best engine >= 5x, INT8 >= 1.5x faster
    than fp32 in the same engine, inference memory >= 2.5x lower. Empty when ``name``
    or the baseline was not measured.
    """
    results, baseline = report["results"], report["settings"]["baseline"]
    short = str(max(report["settings"]["sizes"]))
    if name not in results or baseline not in results:
        return ""
    entry, base = results[name]["sizes"][short], results[baseline]["sizes"][short]
    latency = {e: s["median"] for e, s in entry["latency_s"].items()}
    base_latency = {e: s["median"] for e, s in base["latency_s"].items()}
    rows = []

    def row(target, measured, goal):
        met = "yes" if measured >= goal else "no"
        rows.append(f"| {target} | {measured:.2f}x | {goal:g}x | {met} |")

    if "pytorch" in latency:
        row(f"eager PyTorch: {baseline} / {name}", base_latency["pytorch"] / latency["pytorch"], 4)
    best, base_best = min(latency, key=latency.get), min(base_latency, key=base_latency.get)
    row(
        f"best engine against best engine: {baseline} ({base_best}) / {name} ({best})",
        base_latency[base_best] / latency[best],
        5,
    )
    for engine in sorted(e for e in latency if e.endswith("-int8")):
        fp32 = engine[: -len("-int8")]
        if fp32 in latency:
            row(f"INT8 in {fp32}: fp32 / INT8 of {name}", latency[fp32] / latency[engine], 1.5)
    memory, base_memory = entry.get("memory", {}), base.get("memory", {})
    for engine in memory:
        if engine in base_memory:
            row(
                f"inference memory ({engine}): {baseline} / {name}",
                base_memory[engine][MEMORY_KEY] / memory[engine][MEMORY_KEY],
                2.5,
            )
    header = [
        f"Targets at shortest edge {short} (medians of this run):",
        "",
        "| target | measured | aim | met |",
        "|:--|--:|--:|:-:|",
    ]
    return "\n".join(header + rows)


def _command(argv) -> str:
    return " ".join(["python", "-m", "benchmarks.bench_inference"] + [shlex.quote(a) for a in argv])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = get_parser().parse_args(argv)
    if args.from_json:
        if not args.docs_section:
            raise SystemExit("--from-json writes docs only: give --docs-section NAME too.")
        with open(args.from_json) as f:
            report = json.load(f)
        print(f"wrote {write_doc_section(args.docs_section, format_markdown(report), args.docs)}")
        return report
    if args.quick:
        apply_quick(args, argv, QUICK)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger = logging.getLogger("bench_inference")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
    setup_process(args)
    accuracy_files = find_results(args.models, args.results)

    machine = machine_info(args.threads, args.allocator)
    results = collect(args, logger)
    add_ratios(results, MEMORY_KEY, args.baseline)
    accuracy = {name: read_accuracy(path) for name, path in accuracy_files.items()}
    report = {
        "command": _command(argv),
        "machine": machine,
        "settings": {
            "baseline": args.baseline,
            "sizes": args.sizes,
            "aspect": args.aspect,
            "engines": args.engines,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "opts": args.opts,
            "workload": "random weights; configs' maxima of proposals and detections, the "
            "same boxes for every model (benchmarks.engines.equalize_workload)",
            "latency": "one (3, H, W) image in, post-processed Instances with full-image "
            "masks out; warm-up excluded; models interleaved round by round",
            "memory": "fresh process per model: inference_mb = weights + how far one "
            "inference raises resident memory (after a warm-up on a small image); "
            "peak_mb / peak_above_base_mb: the process's high-water mark",
        },
        "results": results,
        "accuracy": {
            name: {"file": accuracy_files[name], **(acc or {})} for name, acc in accuracy.items()
        },
        "targets": check_targets(results, args.sizes, args.baseline),
    }
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    os.makedirs(args.output_dir, exist_ok=True)
    json_path = os.path.join(args.output_dir, "inference.json")
    png_path = os.path.join(args.output_dir, "inference.png")
    write_json(json_path, report)
    plot_report(
        results,
        accuracy,
        png_path,
        args.sizes,
        engines=[e for e in ("pytorch", "pytorch-fused-cl", "onnxruntime") if e in args.engines],
        time_label="CPU latency per image",
        memory_engine="pytorch",
        memory_key=MEMORY_KEY,
        memory_label="Inference memory: weights + peak activations (PyTorch eager)",
    )
    print(format_table(results, args.sizes, MEMORY_KEY))
    print("targets:", report["targets"])
    print(f"wrote {json_path} and {png_path}")
    if args.docs_section:
        print(f"wrote {write_doc_section(args.docs_section, format_markdown(report), args.docs)}")
    return report


if __name__ == "__main__":
    main()

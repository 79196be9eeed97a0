#!/usr/bin/env python
"""
Which backbone for Mask R-CNN? Trains the same Mask R-CNN with each backbone of the grid
on the generated VOC-layout data, with the demo's schedule and seeds 0 and 1, measures
latency, memory and mult-adds at shortest edge 800 in one side-by-side benchmark run,
and writes the results JSON, two plots and docs/MODEL_ZOO.md.

    python tools/train_backbone_grid.py                # benchmark, train what is missing, report
    python tools/train_backbone_grid.py --max-runs 2   # at most two training runs this time
    python tools/train_backbone_grid.py --report-only  # report the runs finished so far
    python tools/train_backbone_grid.py --from-json docs/results/backbone_grid.json  # docs only

The runs take hours on 2 CPU cores: the tool resumes where it stopped. A finished run
(its results.json) is kept, an interrupted one continues from its last checkpoint
(tools/train_net.py --resume), and the benchmark runs once. Runs and the benchmark
already recorded in the results JSON count as done too, so the grid continues on
another machine from the committed JSON alone; a recorded run counts only while its
config still gives the same recipe (the fingerprint of the merged config). Seed 0 of
every model trains first, then seed 1; R50's second seed comes last.
"""

import argparse
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
from collections import OrderedDict

from atto_detectron.analysis.backbone_grid import (
    format_model_zoo,
    pareto_front,
    plot_grid,
    read_run_metrics,
    summarize_seeds,
)

# Name (as in benchmarks/bench_inference.py) -> config on the generated data.
GRID = OrderedDict(
    [
        ("AttoNet-A", "configs/synth/atto_maskrcnn_synth.yaml"),
        ("AttoNet-B", "configs/synth/atto_maskrcnn_synth_B.yaml"),
        ("AttoNet-C", "configs/synth/atto_maskrcnn_synth_C.yaml"),
        ("AttoNet-D", "configs/synth/atto_maskrcnn_synth_D.yaml"),
        ("AttoNet-A-d2heads", "configs/synth/atto_maskrcnn_synth_d2heads.yaml"),
        ("MobileNetV2-FPN", "configs/synth/mask_rcnn_mobilenet_v2_FPN_synth.yaml"),
        ("ShuffleNetV2-FPN", "configs/synth/mask_rcnn_shufflenet_v2_FPN_synth.yaml"),
        ("R50-FPN", "configs/synth/mask_rcnn_R_50_FPN_synth.yaml"),
    ]
)
BASELINE = "R50-FPN"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARK_SHORT_EDGE = 800
BENCHMARK_ENGINE = "pytorch"

logger = logging.getLogger("train_backbone_grid")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir",
        default="output/backbone_grid",
        metavar="DIR",
        help="runs go to DIR/runs/<model>/seed<k>, the benchmark to DIR/benchmark",
    )
    parser.add_argument("--models", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=2,
        help="training processes per run, as `make demo` (CPU processes with Gloo)",
    )
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help="train at most this many runs now, then report (default: all missing)",
    )
    parser.add_argument(
        "--benchmark-repeats",
        type=int,
        default=5,
        help="timed rounds of the side-by-side benchmark (default 5)",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="train and benchmark nothing: report"
    )
    parser.add_argument(
        "--json",
        default="docs/results/backbone_grid.json",
        metavar="FILE",
        help="the results JSON (default: %(default)s, committed)",
    )
    parser.add_argument(
        "--docs",
        default="docs/MODEL_ZOO.md",
        metavar="FILE",
        help="the model-zoo page written from the JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--images",
        default="docs/images",
        metavar="DIR",
        help="where the two plots go (default: %(default)s)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure and train nothing: write --docs and the plots from FILE",
    )
    return parser


def recipe_fingerprint(config: str) -> str:
    """
    A short hash of the merged training config (``_BASE_`` files and defaults included),
    with the keys that differ between runs of one model (seed, output folder) blanked:
    equal for two runs exactly when they train the same recipe.
    """
    from atto_detectron.config import load_config

    cfg = load_config(os.path.join(REPO_ROOT, config), ["SEED", -1, "OUTPUT_DIR", ""], "cpu")
    return hashlib.sha256(cfg.dump().encode()).hexdigest()[:16]


def load_recorded(path: str) -> dict:
    """The results JSON of an earlier invocation (perhaps on another machine), or {}."""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f, object_pairs_hook=OrderedDict)


def recorded_runs(recorded: dict, models) -> dict:
    """(model, seed) -> the run recorded in ``recorded`` whose recipe is still the config's."""
    runs = {}
    for name in models:
        entry = recorded.get("models", {}).get(name)
        if not entry or not entry.get("runs"):
            continue
        recipe = recipe_fingerprint(GRID[name])
        for run in entry["runs"]:
            if run.get("recipe") == recipe:
                runs[(name, run["seed"])] = run
            else:
                logger.info(
                    f"{name} seed {run['seed']}: recorded with another recipe "
                    f"({run.get('recipe')} against {recipe} now), trains again"
                )
    return runs


def planned_runs(models, seeds):
    """(model, seed) in training order: each seed for all models, R50's later seeds last."""
    runs = [(m, s) for s in seeds for m in models if m != BASELINE or s == seeds[0]]
    return runs + [(BASELINE, s) for s in seeds[1:] if BASELINE in models]


def run_dir(args, model: str, seed: int) -> str:
    return os.path.join(args.output_dir, "runs", model, f"seed{seed}")


def train_command(args, model: str, seed: int):
    return [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        GRID[model],
        "--num-gpus",
        str(args.num_gpus),
        "--resume",
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        run_dir(args, model, seed),
    ]


def train_missing_runs(args, recorded=()):
    """
    Trains (or resumes) every planned run that has neither a results.json nor an entry
    in ``recorded`` ((model, seed) pairs), up to --max-runs.
    """
    todo = [
        (m, s)
        for m, s in planned_runs(args.models, args.seeds)
        if (m, s) not in recorded
        and not os.path.isfile(os.path.join(run_dir(args, m, s), "results.json"))
    ]
    if args.max_runs is not None:
        todo = todo[: args.max_runs]
    # The configs train on the CPU: hide GPUs from launch, as `make demo` does.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    for index, (model, seed) in enumerate(todo, start=1):
        command = train_command(args, model, seed)
        logger.info(f"[{index}/{len(todo)}] {model} seed {seed}: {shlex.join(command)}")
        result = subprocess.run(command, cwd=REPO_ROOT, env=env)
        if result.returncode != 0:
            raise SystemExit(
                f"Training {model} seed {seed} failed (exit code {result.returncode}); its "
                f"log is {os.path.join(run_dir(args, model, seed), 'log.txt')}. Fix the cause "
                f"and run this tool again: the run continues from its last checkpoint."
            )


def benchmark_dir(args) -> str:
    return os.path.join(args.output_dir, "benchmark")


def benchmark_recorded(recorded: dict, models) -> bool:
    """Whether ``recorded`` holds a benchmark run that measured every model of the grid."""
    entries = recorded.get("models", {})
    return bool(recorded.get("benchmark", {}).get("command")) and all(
        entries.get(name, {}).get("latency_ms") for name in models
    )


def run_benchmark(args, recorded=None):
    """
    One side-by-side run of benchmarks/bench_inference.py for all models, once: not when
    its output exists or ``recorded`` already holds one for every model.
    """
    path = os.path.join(benchmark_dir(args), "inference.json")
    if os.path.isfile(path) or benchmark_recorded(recorded or {}, args.models):
        return
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_inference",
        "--models",
        *args.models,
        "--sizes",
        str(BENCHMARK_SHORT_EDGE),
        "--engines",
        BENCHMARK_ENGINE,
        "--repeats",
        str(args.benchmark_repeats),
        "--warmup",
        "1",
        "--allocator",
        "default",
        "--memory-engines",
        BENCHMARK_ENGINE,
        "--memory-repeats",
        "1",
        "--output-dir",
        benchmark_dir(args),
    ]
    logger.info(f"benchmark: {shlex.join(command)}")
    subprocess.run(command, cwd=REPO_ROOT, check=True)


def backbone_parameters(config: str) -> int:
    from detectron2.modeling import build_model

    from atto_detectron.analysis.complexity import count_parameters
    from atto_detectron.config import load_config

    model = build_model(load_config(os.path.join(REPO_ROOT, config), device="cpu"))
    return count_parameters(model.backbone.bottom_up)


COST_KEYS = (
    "benchmark_config",
    "params",
    "mult_adds",
    "latency_ms",
    "latency_ratio_paired",
    "memory_mb",
)


def collect(args, recorded=None) -> dict:
    """
    The grid's report from the finished runs and the benchmark under --output-dir, and,
    where those are missing, from the runs and the benchmark in ``recorded`` (the results
    JSON of an earlier invocation).
    """
    recorded = recorded or {}
    bench_path = os.path.join(benchmark_dir(args), "inference.json")
    bench = {}
    if os.path.isfile(bench_path):
        with open(bench_path) as f:
            bench = json.load(f)
    elif benchmark_recorded(recorded, args.models):
        bench = {"command": None, **recorded["benchmark"], "recorded": recorded["models"]}
    earlier_runs = recorded_runs(recorded, args.models)
    short = str(BENCHMARK_SHORT_EDGE)
    models = OrderedDict()
    for name in args.models:
        entry = {"config": GRID[name], "backbone_params": backbone_parameters(GRID[name])}
        measured = bench.get("results", {}).get(name)
        if "recorded" in bench:
            entry.update({key: bench["recorded"][name].get(key) for key in COST_KEYS})
        elif measured:
            size = measured["sizes"][short]
            entry["benchmark_config"] = measured["config"]
            entry["params"] = measured["params"]
            entry["mult_adds"] = size.get("mult_adds", {}).get("total")
            entry["latency_ms"] = size["latency_s"][BENCHMARK_ENGINE]["median"] * 1000
            ratios = size.get("ratio_to_baseline", {})
            entry["latency_ratio_paired"] = ratios.get("latency_paired", {}).get(BENCHMARK_ENGINE)
            memory = size.get("memory", {}).get(BENCHMARK_ENGINE)
            entry["memory_mb"] = memory["inference_mb"] if memory else None
        runs = []
        recipe = recipe_fingerprint(GRID[name])
        for seed in args.seeds:
            path = os.path.join(run_dir(args, name, seed), "results.json")
            if not os.path.isfile(path):
                if (name, seed) in earlier_runs:
                    runs.append(earlier_runs[(name, seed)])
                continue
            with open(path) as f:
                results = json.load(f)
            runs.append(
                {
                    "seed": seed,
                    "recipe": recipe,
                    "results": os.path.relpath(os.path.abspath(path), REPO_ROOT),
                    "iteration": results.get("iteration"),
                    **read_run_metrics(results),
                }
            )
        entry["runs"] = runs
        entry["accuracy"] = summarize_seeds(runs)
        models[name] = entry
    report = {
        "command": "python tools/train_backbone_grid.py "
        + shlex.join(["--output-dir", args.output_dir, "--seeds", *map(str, args.seeds)]),
        "training": {
            "data": "voc_synth_train / voc_synth_val (tools/make_synthetic_voc.py)",
            "schedule": "each config's own (the demo's: 1100 iterations, 4 images, cosine)",
            "command": shlex.join(
                [
                    "python",
                    "tools/train_net.py",
                    "--config-file",
                    "CONFIG",
                    "--num-gpus",
                    str(args.num_gpus),
                    "--resume",
                    "SEED",
                    "K",
                    "OUTPUT_DIR",
                    "DIR",
                ]
            ),
        },
        "benchmark": {
            "command": bench.get("command"),
            "machine": bench.get("machine"),
            "short_edge": BENCHMARK_SHORT_EDGE,
            "engine": BENCHMARK_ENGINE,
            "settings": bench.get("settings"),
        },
        "models": models,
    }
    report["pareto"] = {
        cost: {
            task: pareto_front(
                {
                    name: (entry[cost], entry["accuracy"][task]["AP50"]["mean"])
                    for name, entry in models.items()
                    if entry.get(cost) and "AP50" in entry["accuracy"].get(task, {})
                }
            )
            for task in ("box", "mask")
        }
        for cost in ("latency_ms", "mult_adds")
    }
    return report


def write_docs(report: dict, args) -> None:
    os.makedirs(args.images, exist_ok=True)
    plots = {
        cost: plot_grid(report, os.path.join(args.images, f"backbone_grid_{cost}.png"), cost)
        for cost in ("latency_ms", "mult_adds")
    }
    docs_dir = os.path.dirname(os.path.abspath(args.docs))
    machine = report["benchmark"].get("machine") or {}
    text = [
        "# Model zoo: which backbone for Mask R-CNN?",
        "",
        "Mask R-CNN with each backbone, the same FPN, heads and schedule (the demo's: "
        "`configs/synth/`), trained on the generated VOC-layout data and evaluated on "
        "`voc_synth_val` (COCOEvaluator AP, percent; mean ± standard deviation over the "
        "seeds). R50-FPN keeps its own config's FPN and heads (Detectron2's widths). "
        "AttoNet-A-d2heads is AttoNet-A with Detectron2's FPN and head widths (256, "
        "FC-1024, conv-256). No model starts from pretrained weights.",
        "",
        f"Cost, from one side-by-side benchmark run: parameters and mult-adds (fvcore) of "
        f"the VOC configs at 800 x 1067, CPU latency and inference memory at shortest edge "
        f"{report['benchmark']['short_edge']}, PyTorch eager, random weights and the same "
        f"workload for all (1000 proposals, 100 detections); machine: "
        f"{machine.get('cpu', 'not measured yet')}, {machine.get('threads', '?')} threads.",
        "",
        "Written by `tools/train_backbone_grid.py` from "
        f"`{os.path.relpath(os.path.abspath(args.json), docs_dir) if args.json else 'its JSON'}`; "
        "rerun it rather than editing this page:",
        "",
        f"```bash\n{report['command']}\n```",
        "",
        f"Benchmark: `{report['benchmark'].get('command') or 'not run yet'}`",
        "",
        format_model_zoo(report, BASELINE),
        "",
    ]
    for cost, path in plots.items():
        label = {"latency_ms": "latency", "mult_adds": "mult-adds"}[cost]
        text.append(f"![box and mask AP50 against {label}]({os.path.relpath(path, docs_dir)})")
        text.append("")
    with open(args.docs, "w") as f:
        f.write("\n".join(text))
    logger.info(f"wrote {args.docs} and {', '.join(plots.values())}")


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.chdir(REPO_ROOT)
    if args.from_json:
        args.json = args.from_json
        with open(args.from_json) as f:
            report = json.load(f, object_pairs_hook=OrderedDict)
        write_docs(report, args)
        return report
    recorded = load_recorded(args.json)
    if not args.report_only:
        run_benchmark(args, recorded)
        train_missing_runs(args, recorded_runs(recorded, args.models))
    report = collect(args, recorded)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(report, f, indent=2)
    logger.info(f"wrote {args.json}")
    write_docs(report, args)
    return report


if __name__ == "__main__":
    main()

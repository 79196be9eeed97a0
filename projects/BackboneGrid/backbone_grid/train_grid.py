"""
Which backbone for Mask R-CNN? Trains the same Mask R-CNN with each backbone of the grid
under one comparison protocol (projects/BackboneGrid/configs/: the demo's schedule, the
last weights, 2,000 validation images), after a learning-rate check per model, with as many
seeds as the intervals of the targets need; measures latency and memory where AP is
measured and at 800 in side-by-side benchmark runs; reports means with 95% intervals and
every difference to AttoNet-A with Welch's interval.

Run from the repository root (projects/BackboneGrid/train_backbone_grid.py)::

    python projects/BackboneGrid/train_backbone_grid.py               # benchmark, train, report
    python projects/BackboneGrid/train_backbone_grid.py --max-runs 2  # at most two runs this time
    python projects/BackboneGrid/train_backbone_grid.py --report-only # report the runs so far
    python projects/BackboneGrid/train_backbone_grid.py --update-docs # ... and the committed docs
    python projects/BackboneGrid/train_backbone_grid.py --docs F \\
        --from-json docs/results/backbone_grid.json

Order: the learning-rate check of AttoNet-A, MobileNetV2-FPN, ShuffleNetV2-FPN and
R50-FPN (the models of the targets), their seeds round by round, then the other models.
A learning-rate check trains one seed per rate on voc_synth_grid_train and scores it on
voc_synth_grid_holdout (never on the validation set); the rate with the highest mean of
box and mask AP50 trains every seed of that model. Seeds per model: the fewest for which
Welch's interval of a difference has a half-width of at most --target-half-width at the
measured seed spread, at least --min-seeds (R50-FPN too), topped up while a target pair
is still wider.

The runs take days on 2 CPU cores: the tool resumes where it stopped. A finished run
(its results.json) is kept, an interrupted one continues from its last checkpoint, and
the benchmarks run once. Runs and benchmarks recorded in the committed JSON
(docs/results/backbone_grid.json) count as done too, so the grid continues on another
machine from that file alone, while a recorded run's recipe (config, built model and
data) is still the current one. Reports go to --output-dir unless --update-docs is given.
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

from atto_detectron.analysis.intervals import seeds_needed, welch_half_width

from .report import (
    TASKS,
    choose_learning_rate,
    format_model_zoo,
    format_readme_results,
    grid_spread,
    pair_differences,
    read_run_metrics,
    resolved_pareto,
    seed_values,
    summarize_seeds,
)

# Name (as in benchmarks/bench_inference.py) -> config of the comparison protocol.
GRID = OrderedDict(
    [
        ("AttoNet-A", "projects/BackboneGrid/configs/atto_maskrcnn_grid.yaml"),
        ("AttoNet-B", "projects/BackboneGrid/configs/atto_maskrcnn_grid_B.yaml"),
        ("AttoNet-C", "projects/BackboneGrid/configs/atto_maskrcnn_grid_C.yaml"),
        ("AttoNet-D", "projects/BackboneGrid/configs/atto_maskrcnn_grid_D.yaml"),
        ("AttoNet-A-d2heads", "projects/BackboneGrid/configs/atto_maskrcnn_grid_d2heads.yaml"),
        ("MobileNetV2-FPN", "projects/BackboneGrid/configs/mask_rcnn_mobilenet_v2_FPN_grid.yaml"),
        ("ShuffleNetV2-FPN", "projects/BackboneGrid/configs/mask_rcnn_shufflenet_v2_FPN_grid.yaml"),
        ("R50-FPN", "projects/BackboneGrid/configs/mask_rcnn_R_50_FPN_grid.yaml"),
    ]
)
REFERENCE = "AttoNet-A"
BASELINE = "R50-FPN"
# The models of the targets (AttoNet-A against each of the others): trained first.
TARGET_PEERS = ("MobileNetV2-FPN", "ShuffleNetV2-FPN", "R50-FPN")
LR_CANDIDATES = (0.01, 0.02, 0.04)
MAX_LR_VALUES = 5  # the range grows by factors of 2 while the best rate is at its edge
HOLDOUT = "voc_synth_grid_holdout"
# The targets: Welch's 95% interval of AttoNet-A minus a peer at most +-2.5 AP50; every
# model at least 3 seeds.
TARGET_HALF_WIDTH = 2.5
MIN_SEEDS = 3
# The target of the protocol's seed standard deviation, box and mask AP50.
TARGET_SEED_STD = 1.5
# The generated data of the protocol (tools/make_synthetic_voc.py arguments).
GRID_DATA = {"seed": 0, "num_train": 1000, "num_holdout": 400, "num_val": 2000, "long_side": 256}
GRID_DATA_FOLDER = "VOCsynth_grid"
# Where cost is measured: at the setting AP is measured at (a 4:3 image resized by the
# grid configs' test resize to 192 x 256; 300 proposals, 100 detections; ROIAlign with
# 2 x 2 samples) and at the VOC configs' (shortest edge 800; 1000 proposals).
OPERATING_POINTS = OrderedDict(
    [
        (
            "ap",
            {
                "size": 192,
                "opts": [
                    "MODEL.RPN.POST_NMS_TOPK_TEST",
                    "300",
                    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO",
                    "2",
                    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO",
                    "2",
                ],
                "description": "192 x 256, 300 proposals, 100 detections (where AP is measured)",
            },
        ),
        (
            "voc",
            {"size": 800, "opts": [], "description": "800 x 1067, 1000 proposals, 100 detections"},
        ),
    ]
)
SPREAD_STUDY = "docs/results/seed_spread.json"
# The variant of projects/BackboneGrid/measure_seed_spread.py that is this protocol.
SPREAD_STUDY_VARIANT = {"recipe": "demo", "weights": "last", "dataset": "voc_synth_grid_val"}
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))

logger = logging.getLogger("train_backbone_grid")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output-dir",
        default="output/backbone_grid",
        metavar="DIR",
        help="runs go to DIR/runs/<model>/seed<k> and DIR/lr_check/<model>/lr<rate>, the "
        "benchmarks to DIR/benchmark_<point>, the report to DIR/ unless --update-docs",
    )
    parser.add_argument("--models", nargs="+", default=list(GRID), choices=list(GRID))
    parser.add_argument("--num-gpus", type=int, default=2, help="training processes per run")
    parser.add_argument(
        "--max-runs", type=int, default=None, help="train at most this many runs now, then report"
    )
    parser.add_argument("--benchmark-repeats", type=int, default=5)
    parser.add_argument("--target-half-width", type=float, default=TARGET_HALF_WIDTH)
    parser.add_argument("--min-seeds", type=int, default=MIN_SEEDS)
    parser.add_argument("--max-seeds", type=int, default=10)
    parser.add_argument(
        "--report-only", action="store_true", help="train and benchmark nothing: report"
    )
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="write the report into the committed docs: --recorded, docs/MODEL_ZOO.md, its "
        "plots and README.md's results table",
    )
    parser.add_argument(
        "--recorded",
        default="docs/results/backbone_grid.json",
        metavar="FILE",
        help="the committed results JSON whose runs count as done (default: %(default)s)",
    )
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="measure and train nothing: write --docs (default docs/MODEL_ZOO.md) and its "
        "plots from FILE",
    )
    parser.add_argument("--docs", default=None, metavar="FILE", help="the model-zoo page")
    parser.add_argument("--images", default=None, metavar="DIR", help="where the plots go")
    return parser


# ---------------------------------------------------------------------------- recipes


def _current_fingerprints(config: str, opts) -> dict:
    from detectron2.modeling import build_model

    from atto_detectron.config import load_config
    from atto_detectron.engine.provenance import config_fingerprint, model_fingerprint

    cfg = load_config(os.path.join(REPO_ROOT, config), list(opts), "cpu")
    return {
        "config_fingerprint": config_fingerprint(cfg),
        "model_fingerprint": model_fingerprint(build_model(cfg)),
    }


_RECIPES = {}


def recipe(config: str, opts=()) -> str:
    """
    A short hash of what a run trains and where it is scored: the merged config with
    ``opts`` (seed and output folder aside), the model it builds with the current code,
    and the generated data's arguments. Equal for two runs exactly when they train and
    score the same thing.
    """
    key = (config, tuple(opts))
    if key not in _RECIPES:
        _RECIPES[key] = _recipe_of(_current_fingerprints(config, opts), GRID_DATA)
    return _RECIPES[key]


def _recipe_of(fingerprints: dict, data: dict) -> str:
    text = json.dumps(
        [fingerprints.get("config_fingerprint"), fingerprints.get("model_fingerprint"), data],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_recipe(provenance: dict) -> str:
    """The :func:`recipe` of a finished run, from what its results.json records."""
    generators = [g for g in (provenance.get("datasets") or {}).values() if g]
    data = {k: generators[0].get(k) for k in GRID_DATA} if generators else None
    return _recipe_of(provenance, data)


def lr_opts(lr: float):
    return ["SOLVER.BASE_LR", repr(lr), "DATASETS.TEST", f"('{HOLDOUT}',)"]


def seed_opts(lr: float):
    return ["SOLVER.BASE_LR", repr(lr)]


# ---------------------------------------------------------------------------- runs


def lr_dir(args, model: str, lr: float) -> str:
    return os.path.join(args.output_dir, "lr_check", model, f"lr{lr:g}")


def seed_dir(args, model: str, seed: int) -> str:
    return os.path.join(args.output_dir, "runs", model, f"seed{seed}")


def train_command(args, model: str, folder: str, opts, seed: int):
    return [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        GRID[model],
        "--num-gpus",
        str(args.num_gpus),
        "--resume",
        *opts,
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        folder,
    ]


def _record_from_results(path: str, key: str, value, dataset=None) -> dict:
    with open(path) as f:
        results = json.load(f)
    provenance = results.get("provenance") or {}
    return {
        key: value,
        "recipe": run_recipe(provenance),
        "results": os.path.relpath(os.path.abspath(path), REPO_ROOT),
        "iteration": results.get("iteration"),
        **read_run_metrics(results, dataset),
        "provenance": provenance,
    }


class GridState:
    """The finished runs of the grid: in --output-dir, or recorded in the committed JSON."""

    def __init__(self, args, recorded: dict):
        self.args = args
        self.recorded = recorded.get("models", {})

    def _recorded(self, model: str, field: str, key: str, value, expected: str):
        for run in self.recorded.get(model, {}).get(field, []):
            if run.get(key) == value:
                if run.get("recipe") == expected:
                    return run
                logger.info(f"{model} {key} {value}: recorded with another recipe, trains again")
        return None

    def lr_checks(self, model: str):
        """Finished learning-rate checks of ``model``, by rate."""
        rates = set(LR_CANDIDATES) | {
            r["lr"] for r in self.recorded.get(model, {}).get("lr_check", [])
        }
        if os.path.isdir(os.path.join(self.args.output_dir, "lr_check", model)):
            for name in os.listdir(os.path.join(self.args.output_dir, "lr_check", model)):
                if name.startswith("lr"):
                    rates.add(float(name[2:]))
        checks = {}
        for lr in sorted(rates):
            run = self._finished(
                model, "lr_check", "lr", lr, lr_dir(self.args, model, lr), lr_opts(lr), HOLDOUT
            )
            if run:
                checks[lr] = run
        return checks

    def _finished(self, model, field, key, value, folder, opts, dataset=None):
        """
        The finished run ``key == value`` of ``model``: its results.json in ``folder``,
        else the one recorded under ``field``; None unless its recipe is the current one.
        """
        expected = recipe(GRID[model], opts)
        path = os.path.join(folder, "results.json")
        if os.path.isfile(path):
            run = _record_from_results(path, key, value, dataset)
            return run if run["recipe"] == expected else None
        return self._recorded(model, field, key, value, expected)

    def next_lr(self, model: str):
        """The next rate to check for ``model``, or None when its check is complete."""
        checks = self.lr_checks(model)
        for lr in LR_CANDIDATES:
            if lr not in checks:
                return lr
        best = choose_learning_rate(list(checks.values()))
        tried = sorted(checks)
        if len(tried) >= MAX_LR_VALUES:
            return None
        if best["lr"] == tried[0]:
            return tried[0] / 2
        if best["lr"] == tried[-1]:
            return tried[-1] * 2
        return None

    def chosen_lr(self, model: str):
        if self.next_lr(model) is not None:
            return None
        return choose_learning_rate(list(self.lr_checks(model).values()))["lr"]

    def seeds(self, model: str):
        """Finished seed runs of ``model`` at its chosen rate, by seed."""
        lr = self.chosen_lr(model)
        if lr is None:
            return {}
        runs = {}
        seed_ids = {r["seed"] for r in self.recorded.get(model, {}).get("runs", [])}
        folder = os.path.join(self.args.output_dir, "runs", model)
        if os.path.isdir(folder):
            seed_ids |= {int(n[4:]) for n in os.listdir(folder) if n.startswith("seed")}
        for seed in sorted(seed_ids):
            run = self._finished(
                model, "runs", "seed", seed, seed_dir(self.args, model, seed), seed_opts(lr)
            )
            if run:
                runs[seed] = run
        return runs


def seed_spread_estimate(state: GridState, models) -> dict:
    """
    The seed standard deviation (box and mask AP50) that sizes the grid: pooled over the
    grid's own models once two of them have two seeds, else the seed-spread study's
    value for this protocol (docs/results/seed_spread.json).
    """
    runs = {m: {"runs": list(state.seeds(m).values())} for m in models}
    with_two = [m for m in runs if len(runs[m]["runs"]) >= 2]
    if len(with_two) >= 2:
        return {**grid_spread({m: runs[m] for m in with_two}), "source": "grid"}
    path = os.path.join(REPO_ROOT, SPREAD_STUDY)
    if os.path.isfile(path):
        with open(path) as f:
            study = json.load(f)
        for variant in study.get("variants", []):
            if all(variant.get(k) == v for k, v in SPREAD_STUDY_VARIANT.items()):
                if variant["box"].get("std") is not None:
                    return {
                        "box": variant["box"]["std"],
                        "mask": variant["mask"]["std"],
                        "source": SPREAD_STUDY,
                    }
    return {"box": None, "mask": None, "source": None}


def seeds_planned(args, state: GridState, models, spread: dict) -> dict:
    """
    Seeds per model: the fewest giving Welch half-widths of at most the target at the
    measured spread (at least --min-seeds), plus one more for the model of a target pair
    whose measured interval is still wider, up to --max-seeds.
    """
    sigma = max((s for t, s in spread.items() if t in TASKS and s is not None), default=None)
    base = args.min_seeds
    if sigma is not None:
        try:
            base = seeds_needed(sigma, args.target_half_width, args.min_seeds, args.max_seeds)
        except ValueError:
            base = args.max_seeds
    plan = {m: base for m in models}
    if REFERENCE not in models:
        return plan
    ref_runs = list(state.seeds(REFERENCE).values())
    for peer in TARGET_PEERS:
        if peer not in models:
            continue
        runs = list(state.seeds(peer).values())
        if len(ref_runs) < base or len(runs) < base:
            continue
        for task in TASKS:
            a, b = seed_values(ref_runs, task), seed_values(runs, task)
            sa, sb = _std(a), _std(b)
            if welch_half_width(sa, len(a), sb, len(b)) > args.target_half_width:
                # More seeds where they shrink the interval most.
                side = REFERENCE if sa**2 / len(a) >= sb**2 / len(b) else peer
                plan[side] = min(args.max_seeds, max(plan[side], len(state.seeds(side)) + 1))
    return plan


def _std(values):
    import statistics

    return statistics.stdev(values) if len(values) > 1 else 0.0


def ordered_models(models):
    """The target models first (AttoNet-A, its peers), then the others, in grid order."""
    first = [m for m in (REFERENCE,) + TARGET_PEERS if m in models]
    return first + [m for m in models if m not in first]


def next_run(args, state: GridState, models):
    """
    The next run to train, as (model, kind, value, folder, opts, seed), or None when the
    grid is complete: learning-rate checks of a group of models, then their seeds round
    by round (each round in model order); the target models first.
    """
    ordered = ordered_models(models)
    groups = [ordered[: 1 + len([m for m in TARGET_PEERS if m in models])]]
    groups.append([m for m in ordered if m not in groups[0]])
    spread = seed_spread_estimate(state, models)
    plan = seeds_planned(args, state, models, spread)
    for group in groups:
        for model in group:
            lr = state.next_lr(model)
            if lr is not None:
                return model, "lr", lr, lr_dir(args, model, lr), lr_opts(lr), 0
        done = {m: state.seeds(m) for m in group}
        for round_ in range(max([plan[m] for m in group], default=0)):
            for model in group:
                if round_ < plan[model] and len(done[model]) <= round_:
                    seed = next(s for s in range(args.max_seeds * 2) if s not in done[model])
                    lr = state.chosen_lr(model)
                    return model, "seed", seed, seed_dir(args, model, seed), seed_opts(lr), seed
    return None


def train(args, state: GridState, models, on_run_finished=None):
    """Trains (or resumes) the runs :func:`next_run` names, up to --max-runs."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the configs train on the CPU
    count = 0
    while args.max_runs is None or count < args.max_runs:
        planned = next_run(args, state, models)
        if planned is None:
            logger.info("The grid is complete.")
            return
        model, kind, value, folder, opts, seed = planned
        if os.path.isfile(os.path.join(folder, "results.json")):
            # Finished, yet not counted: its recipe is not the current one.
            raise SystemExit(
                f"{folder} holds a finished run of another recipe (config, model or data "
                f"changed since). Move it away; this tool does not overwrite a run."
            )
        command = train_command(args, model, folder, opts, seed)
        logger.info(f"{model} {kind} {value}: {shlex.join(command)}")
        result = subprocess.run(command, cwd=REPO_ROOT, env=env)
        if result.returncode != 0 or not os.path.isfile(os.path.join(folder, "results.json")):
            raise SystemExit(
                f"Training {model} {kind} {value} failed (exit code {result.returncode}); its "
                f"log is {os.path.join(folder, 'log.txt')}. Fix the cause and run this tool "
                f"again: the run continues from its last checkpoint."
            )
        count += 1
        if on_run_finished:
            on_run_finished()


def ensure_data():
    """Generates the protocol's data when it is missing; refuses data of other arguments."""
    from atto_detectron.synthetic.voc import ensure_synthetic_voc

    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    try:
        ensure_synthetic_voc(os.path.join(REPO_ROOT, root, GRID_DATA_FOLDER), True, **GRID_DATA)
    except ValueError as e:
        raise SystemExit(str(e)) from None


# ---------------------------------------------------------------------------- benchmarks


def benchmark_path(args, point: str) -> str:
    return os.path.join(args.output_dir, f"benchmark_{point}", "inference.json")


def benchmark_recorded(recorded: dict, point: str, models) -> bool:
    entries = recorded.get("models", {})
    return bool(recorded.get("benchmarks", {}).get(point, {}).get("command")) and all(
        (entries.get(m, {}).get("cost", {}).get(point) or {}).get("latency_ms") for m in models
    )


def run_benchmarks(args, recorded: dict, models):
    """One side-by-side run of benchmarks/bench_inference.py per operating point, once."""
    for point, setting in OPERATING_POINTS.items():
        if os.path.isfile(benchmark_path(args, point)) or benchmark_recorded(
            recorded, point, models
        ):
            continue
        command = [
            sys.executable,
            "-m",
            "benchmarks.bench_inference",
            "--models",
            *models,
            "--sizes",
            str(setting["size"]),
            "--engines",
            "pytorch",
            "--repeats",
            str(args.benchmark_repeats),
            "--warmup",
            "1",
            "--allocator",
            "default",
            "--memory-engines",
            "pytorch",
            "--memory-repeats",
            "1",
            "--output-dir",
            os.path.dirname(benchmark_path(args, point)),
        ]
        if setting["opts"]:
            command += ["--opts", *setting["opts"]]
        logger.info(f"benchmark ({point}): {shlex.join(command)}")
        subprocess.run(command, cwd=REPO_ROOT, check=True)


def _benchmark_cost(measured: dict, size: int) -> dict:
    entry = measured["sizes"][str(size)]
    memory = entry.get("memory", {}).get("pytorch")
    return {
        "latency_ms": entry["latency_s"]["pytorch"]["median"] * 1000,
        "memory_mb": memory["inference_mb"] if memory else None,
        "mult_adds": entry.get("mult_adds", {}).get("total"),
    }


# ---------------------------------------------------------------------------- report


def backbone_parameters(config: str) -> int:
    from detectron2.modeling import build_model

    from atto_detectron.analysis.complexity import count_parameters
    from atto_detectron.config import load_config

    model = build_model(load_config(os.path.join(REPO_ROOT, config), device="cpu"))
    return count_parameters(model.backbone.bottom_up)


def collect(args, state: GridState, recorded: dict, models) -> dict:
    """The grid's report from the finished runs and benchmarks (or those recorded)."""
    benchmarks = OrderedDict()
    costs = {m: {} for m in models}
    for point, setting in OPERATING_POINTS.items():
        path = benchmark_path(args, point)
        if os.path.isfile(path):
            with open(path) as f:
                bench = json.load(f)
            benchmarks[point] = {
                "command": bench.get("command"),
                "machine": bench.get("machine"),
                "setting": setting["description"],
            }
            for m in models:
                if m in bench.get("results", {}):
                    costs[m][point] = _benchmark_cost(bench["results"][m], setting["size"])
        elif benchmark_recorded(recorded, point, models):
            benchmarks[point] = recorded["benchmarks"][point]
            for m in models:
                costs[m][point] = recorded["models"][m]["cost"][point]
    entries = OrderedDict()
    for m in models:
        checks = state.lr_checks(m)
        runs = [state.seeds(m)[s] for s in sorted(state.seeds(m))]
        voc = costs[m].get("voc") or {}
        entries[m] = {
            "config": GRID[m],
            "backbone_params": backbone_parameters(GRID[m]),
            "params": _params(args, m, recorded),
            "mult_adds": voc.get("mult_adds"),
            "cost": costs[m],
            "lr_check": [checks[lr] for lr in sorted(checks)],
            "base_lr": state.chosen_lr(m),
            "runs": runs,
            "accuracy": summarize_seeds(runs),
        }
    spread = seed_spread_estimate(state, models)
    report = OrderedDict(
        command="python projects/BackboneGrid/train_backbone_grid.py "
        + shlex.join(["--output-dir", args.output_dir, "--models", *models]),
        protocol={
            "configs": "projects/BackboneGrid/configs/",
            "data": dict(GRID_DATA, folder=GRID_DATA_FOLDER),
            "lr_candidates": list(LR_CANDIDATES),
            "lr_check": f"one seed per rate, trained on voc_synth_grid_train, scored on "
            f"{HOLDOUT} (mean of box and mask AP50)",
            "evaluation": "the last weights on voc_synth_grid_val",
            "training_command": "python tools/train_net.py --config-file CONFIG --num-gpus "
            f"{args.num_gpus} --resume SOLVER.BASE_LR LR SEED K OUTPUT_DIR DIR",
        },
        benchmarks=benchmarks,
        spread={
            "pooled_std": {t: spread.get(t) for t in TASKS},
            "source": spread.get("source"),
            "seeds_planned": seeds_planned(args, state, models, spread),
        },
        models=entries,
    )
    report["pairs"] = pair_differences(entries, REFERENCE) if REFERENCE in entries else {}
    report["pareto"] = {
        cost: {task: resolved_pareto(entries, cost, task) for task in TASKS}
        for cost in ("latency_ms", "mult_adds")
    }
    report["targets"] = targets(args, report)
    return report


def _params(args, model: str, recorded: dict):
    path = benchmark_path(args, "voc")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)["results"].get(model, {}).get("params")
    return recorded.get("models", {}).get(model, {}).get("params")


def targets(args, report: dict) -> dict:
    """The issue's targets, measured: pooled spread, per-pair half-widths, R50's seeds."""
    spread = grid_spread(report["models"])
    out = {
        "pooled_std": {
            t: {
                "value": spread[t],
                "target": 1.5,
                "met": spread[t] is not None and spread[t] <= 1.5,
            }
            for t in TASKS
        },
        "pairs": {},
        "baseline_seeds": {
            "value": len(report["models"].get(BASELINE, {}).get("runs", [])),
            "target": 3,
        },
    }
    out["baseline_seeds"]["met"] = out["baseline_seeds"]["value"] >= 3
    for peer in TARGET_PEERS:
        pair = report["pairs"].get(peer) or {}
        out["pairs"][peer] = {
            t: {
                "half_width": (pair.get(t) or {}).get("half_width"),
                "target": args.target_half_width,
                "met": bool(pair.get(t)) and pair[t]["half_width"] <= args.target_half_width,
            }
            for t in TASKS
        }
    return out


def write_docs(report: dict, docs: str, images: str, json_path: str) -> None:
    from .report import plot_grid

    os.makedirs(images, exist_ok=True)
    plots = {
        cost: plot_grid(report, os.path.join(images, f"backbone_grid_{cost}.png"), cost)
        for cost in ("latency_ms", "mult_adds")
    }
    docs_dir = os.path.dirname(os.path.abspath(docs))
    bench = report.get("benchmarks", {})
    machine = (bench.get("ap") or bench.get("voc") or {}).get("machine") or {}
    text = [
        "# Model zoo: which backbone for Mask R-CNN?",
        "",
        "Mask R-CNN with each backbone, the same FPN, heads and schedule, trained from "
        "scratch on the generated VOC-layout data under one comparison protocol "
        "(`projects/BackboneGrid/configs/`: the demo's 1,100 iterations of 4 images, the last "
        "weights evaluated on 2,000 validation images; [how it was chosen](#seed-spread)). "
        "Each model trains at the learning rate its own check chose, scored on held-out "
        "training images. R50-FPN keeps Detectron2's FPN and head widths, as "
        "AttoNet-A-d2heads does for AttoNet-A.",
        "",
        "Cost, from one side-by-side benchmark run per operating point (PyTorch eager, "
        "random weights, the same workload for all): where AP is measured "
        f"({OPERATING_POINTS['ap']['description'].split(' (')[0]}) and at the VOC configs' "
        f"{OPERATING_POINTS['voc']['description']}; parameters and mult-adds (fvcore) at "
        f"800 x 1067. Machine: {machine.get('cpu', 'not measured yet')} "
        f"({machine.get('cpu_capability', '?')}), {machine.get('threads', '?')} threads.",
        "",
        f"Written by `projects/BackboneGrid/train_backbone_grid.py` from "
        f"`{os.path.relpath(os.path.abspath(json_path), docs_dir)}`; rerun it rather than "
        "editing this page:",
        "",
        f"```bash\n{report['command']} --update-docs\n```",
        "",
    ]
    for point, entry in bench.items():
        text += [f"Benchmark ({point}): `{entry.get('command')}`", ""]
    text += [format_model_zoo(report, BASELINE), ""]
    for cost, path in plots.items():
        label = {"latency_ms": "latency", "mult_adds": "mult-adds"}[cost]
        text += [f"![box and mask AP50 against {label}]({os.path.relpath(path, docs_dir)})", ""]
    text += _seed_spread_section()
    with open(docs, "w") as f:
        f.write("\n".join(text))
    logger.info(f"wrote {docs} and {', '.join(plots.values())}")


def _seed_spread_section():
    from .seed_spread import format_seed_spread, protocol_choice

    path = os.path.join(REPO_ROOT, SPREAD_STUDY)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        study = json.load(f)
    choice = protocol_choice(
        study, SPREAD_STUDY_VARIANT, TARGET_HALF_WIDTH, MIN_SEEDS, TARGET_SEED_STD
    )
    return ["## Seed spread", "", format_seed_spread(study), "", " ".join(choice), ""]


README_BEGIN = "<!-- results:begin (projects/BackboneGrid/train_backbone_grid.py --update-docs) -->"
README_END = "<!-- results:end -->"


def update_readme(path: str, report: dict) -> None:
    """Replaces README.md's results table (between its markers) with the report's."""
    with open(path) as f:
        text = f.read()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{path} has no results markers ({README_BEGIN} ... {README_END}).")
    table = format_readme_results(report, REFERENCE, BASELINE)
    text = text[: begin + len(README_BEGIN)] + "\n" + table + "\n" + text[end:]
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.chdir(REPO_ROOT)
    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f, object_pairs_hook=OrderedDict)
        docs = args.docs or "docs/MODEL_ZOO.md"
        images = args.images or os.path.join(os.path.dirname(os.path.abspath(docs)), "images")
        write_docs(report, docs, images, args.from_json)
        return report
    recorded = {}
    if os.path.isfile(args.recorded):
        with open(args.recorded) as f:
            recorded = json.load(f, object_pairs_hook=OrderedDict)
    state = GridState(args, recorded)
    models = list(args.models)

    def write_report(docs_too=True):
        report = collect(args, state, recorded, models)
        if args.update_docs:
            json_path, docs, images = args.recorded, "docs/MODEL_ZOO.md", "docs/images"
        else:
            json_path = os.path.join(args.output_dir, "backbone_grid.json")
            docs = os.path.join(args.output_dir, "MODEL_ZOO.md")
            images = os.path.join(args.output_dir, "images")
        docs, images = args.docs or docs, args.images or images
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
        logger.info(f"wrote {json_path}")
        if docs_too:
            write_docs(report, docs, images, json_path)
            if args.update_docs:
                update_readme(os.path.join(REPO_ROOT, "README.md"), report)
        return report

    if not args.report_only:
        ensure_data()
        run_benchmarks(args, recorded, models)
        # The JSON after every run, so that a stop loses no finished run; docs at the end.
        train(args, state, models, on_run_finished=lambda: write_report(docs_too=False))
    return write_report()

"""
How far does AP50 move between seeds of one model, and what lowers that spread? Trains
AttoNet-A with several seeds per recipe, evaluates each run's last weights and its weight
average (MODEL_EMA) on the 200-image and the 2,000-image validation sets, and reports the
seed standard deviation of box and mask AP50 per variant: the measurement the backbone
grid's protocol is chosen from (docs/MODEL_ZOO.md#seed-spread).

Run from the repository root (projects/BackboneGrid/measure_seed_spread.py)::

    python projects/BackboneGrid/measure_seed_spread.py               # train what is missing
    python projects/BackboneGrid/measure_seed_spread.py --report-only # report the runs so far
    python projects/BackboneGrid/measure_seed_spread.py --recipes demo --seeds 0 1 2 3

Runs go to <output-dir>/<recipe>/seed<k>; an interrupted run resumes from its last
checkpoint, a finished one (its results.json) is kept. The report goes to --json.
"""

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
from collections import OrderedDict

from atto_detectron.analysis.intervals import mean_interval

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
VAL_SETS = OrderedDict(
    [("voc_synth_val", "200 val images"), ("voc_synth_grid_val", "2,000 val images")]
)
DEMO_CONFIG = "configs/synth/atto_maskrcnn_synth.yaml"
# The committed report: written with --update-docs; its runs count as done.
COMMITTED = "docs/results/seed_spread.json"
KEEP_AVERAGE = ["MODEL_EMA.ENABLED", "True", "MODEL_EMA.DECAY", "0.995"]

# Training recipes: config, overrides and the validation sets each run is evaluated on.
# Each run keeps a weight average alongside (it does not change training), so one run
# gives its last weights and its average.
RECIPES = OrderedDict(
    [
        (
            "demo",
            {
                "description": "the demo's recipe (configs/synth/atto_maskrcnn_synth.yaml)",
                "config": DEMO_CONFIG,
                "opts": KEEP_AVERAGE,
                "val_sets": list(VAL_SETS),
            },
        ),
        (
            "syncbn",
            {
                "description": "the demo's, with BN statistics over both processes' images "
                "(MODEL.ATTONET.NORM SyncBN: 4 images instead of 2)",
                "config": DEMO_CONFIG,
                "opts": KEEP_AVERAGE + ["MODEL.ATTONET.NORM", "SyncBN"],
                "val_sets": ["voc_synth_grid_val"],
            },
        ),
        (
            "anchors",
            {
                "description": "the demo's, with anchors from 16 px (16..256 on P2..P6, "
                "not 32..512): about half the generated objects are under 32 x 32 px",
                "config": DEMO_CONFIG,
                "opts": ["MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]"],
                "val_sets": ["voc_synth_grid_val"],
            },
        ),
        (
            "long",
            {
                "description": "the demo's, trained twice as long (2,200 iterations), its "
                "last weights",
                "config": DEMO_CONFIG,
                "opts": [
                    "SOLVER.MAX_ITER",
                    "2200",
                    "SOLVER.CHECKPOINT_PERIOD",
                    "550",
                ],
                "val_sets": ["voc_synth_grid_val"],
            },
        ),
    ]
)
WEIGHTS = OrderedDict([("last", "last weights"), ("ema", "weight average (MODEL_EMA, 0.995)")])

logger = logging.getLogger("measure_seed_spread")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    parser.add_argument("--output-dir", default="output/seed_spread", metavar="DIR")
    parser.add_argument("--num-gpus", type=int, default=2, help="training processes per run")
    parser.add_argument("--report-only", action="store_true", help="train nothing: report")
    parser.add_argument(
        "--update-docs",
        action="store_true",
        help="write the report to the committed docs/results/seed_spread.json (default: "
        "<output-dir>/seed_spread.json); train_backbone_grid.py --from-json puts it into "
        "docs/MODEL_ZOO.md",
    )
    return parser


def run_dir(args, recipe: str, seed: int) -> str:
    return os.path.join(args.output_dir, recipe, f"seed{seed}")


def _common_opts(recipe: str, seed: int, out: str):
    tests = "(" + ",".join(f"'{name}'" for name in RECIPES[recipe]["val_sets"]) + ",)"
    return RECIPES[recipe]["opts"] + [
        "DATASETS.TEST",
        tests,
        "SEED",
        str(seed),
        "OUTPUT_DIR",
        out,
    ]


def commands(args, recipe: str, seed: int):
    """
    {weights: (command, its results.json)}: the training run, which evaluates the
    average of a recipe that keeps one (else its last weights), and for such a recipe
    the evaluation of the last weights.
    """
    out = run_dir(args, recipe, seed)
    base = [sys.executable, "tools/train_net.py", "--config-file", RECIPES[recipe]["config"]]
    base += ["--num-gpus", str(args.num_gpus)]
    train = (
        base + ["--resume"] + _common_opts(recipe, seed, out),
        os.path.join(out, "results.json"),
    )
    if KEEP_AVERAGE[0] not in RECIPES[recipe]["opts"]:
        return {"last": train}
    last = base + ["--eval-only"] + _common_opts(recipe, seed, out)
    last += ["MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "MODEL_EMA.ENABLED", "False"]
    return {"ema": train, "last": (last, os.path.join(out, "eval_model_final", "results.json"))}


# The generated data of the study: the demo's (train, 200 val images) and the grid's
# (the same train images, 2,000 val images), as tools/make_synthetic_voc.py writes them.
DATA = {
    "VOCsynth": {},
    "VOCsynth_grid": {"num_train": 1000, "num_holdout": 400, "num_val": 2000},
}


def ensure_data():
    from atto_detectron.synthetic.voc import ensure_synthetic_voc

    root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    for folder, arguments in DATA.items():
        try:
            ensure_synthetic_voc(os.path.join(REPO_ROOT, root, folder), True, **arguments)
        except ValueError as e:
            raise SystemExit(str(e)) from None


def load_recorded(path: str) -> dict:
    """
    recipe -> seed -> run, from the committed report: a run recorded there counts as done
    while its recipe (config, overrides, validation sets) is still the tool's.
    """
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        report = json.load(f)
    recorded = {}
    for recipe, runs in report.get("runs", {}).items():
        if recipe in RECIPES and report.get("recipes", {}).get(recipe) == RECIPES[recipe]:
            recorded[recipe] = {run["seed"]: run for run in runs if "ap50" in run}
    return recorded


def train_missing(args, recorded, on_run_finished=None):
    ensure_data()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the configs train on the CPU
    for recipe in args.recipes:
        for seed in args.seeds:
            if seed in recorded.get(recipe, {}):
                continue
            for command, result in commands(args, recipe, seed).values():
                if os.path.isfile(os.path.join(REPO_ROOT, result)):
                    continue
                logger.info(shlex.join(command))
                if subprocess.run(command, cwd=REPO_ROOT, env=env).returncode != 0:
                    raise SystemExit(f"{recipe} seed {seed} failed; run this tool again to resume.")
            if on_run_finished:  # the report after every run: a stop loses no finished run
                on_run_finished()


def _ap50(results_path: str):
    with open(results_path) as f:
        record = json.load(f)
    return record, {
        dataset: {"box": labels["APd"]["AP50"], "mask": labels["APm"]["AP50"]}
        for dataset, labels in record["summary"].items()
    }


def finished_runs(args, recipe: str, recorded) -> OrderedDict:
    """seed -> run of ``recipe``: from its folder when both evaluations are there, else
    as recorded; every recipe's, whatever --recipes trains."""
    runs = OrderedDict(sorted(recorded.get(recipe, {}).items()))
    folder = os.path.join(args.output_dir, recipe)
    seeds = sorted(
        int(name[4:])
        for name in (os.listdir(folder) if os.path.isdir(folder) else [])
        if name.startswith("seed") and name[4:].isdigit()
    )
    for seed in seeds:
        paths = {weights: path for weights, (_, path) in commands(args, recipe, seed).items()}
        if not all(os.path.isfile(os.path.join(REPO_ROOT, p)) for p in paths.values()):
            continue
        run = {"seed": seed, "ap50": {}, "results": paths}
        for weights, path in paths.items():
            record, run["ap50"][weights] = _ap50(os.path.join(REPO_ROOT, path))
            if weights == next(iter(paths)):  # the training run's
                run["provenance"] = record.get("provenance")
        runs[seed] = run
    return OrderedDict(sorted(runs.items()))


def collect(args, recorded) -> dict:
    variants = []
    runs = {}
    for recipe in RECIPES:
        per_seed = finished_runs(args, recipe, recorded)
        if not per_seed:
            continue
        runs[recipe] = list(per_seed.values())
        evaluated = set(commands(args, recipe, next(iter(per_seed))))
        for weights, weights_label in WEIGHTS.items():
            if weights not in evaluated:
                continue
            for dataset in RECIPES[recipe]["val_sets"]:
                entry = {
                    "recipe": recipe,
                    "weights": weights,
                    "dataset": dataset,
                    "label": f"{recipe} recipe, {weights_label}, {VAL_SETS[dataset]}",
                    "seeds": list(per_seed),
                }
                for task in ("box", "mask"):
                    values = [run["ap50"][weights][dataset][task] for run in per_seed.values()]
                    entry[task] = {"values": values, **(mean_interval(values) if values else {})}
                variants.append(entry)
    return {
        "command": "python projects/BackboneGrid/measure_seed_spread.py "
        + shlex.join(["--recipes", *runs, "--seeds", *map(str, args.seeds), "--update-docs"]),
        "model": "AttoNet-A",
        "recipes": {name: RECIPES[name] for name in runs},
        "variants": variants,
        "runs": runs,
    }


def main(argv=None):
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    os.chdir(REPO_ROOT)
    recorded = load_recorded(COMMITTED)
    path = COMMITTED if args.update_docs else os.path.join(args.output_dir, "seed_spread.json")

    def write(report):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(report, f, indent=2)

    if not args.report_only:
        train_missing(args, recorded, on_run_finished=lambda: write(collect(args, recorded)))
    report = collect(args, recorded)
    write(report)
    for variant in report["variants"]:
        spread = ", ".join(
            f"{task} AP50 std {variant[task]['std']:.2f}"
            for task in ("box", "mask")
            if "std" in variant[task]
        )
        print(f"{variant['label']}: n={len(variant['seeds'])}, {spread}")
    return report

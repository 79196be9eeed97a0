"""
Machine-driven design exploration: new AttoNets from a human prototype and requirements.

Run from the repository root::

    python projects/DesignExploration/explore_design.py --task classification \\
        --data datasets/synth_imagefolder --budget 16 --output output/design_demo \\
        --requirements projects/DesignExploration/configs/synth_classification.yaml
    python projects/DesignExploration/explore_design.py ... --resume  # continue a killed search
    python projects/DesignExploration/explore_design.py --task detection \\
        --data voc_synth_train,voc_synth_val --budget 8 --requirements ... \\
        --config-file configs/synth/atto_maskrcnn_synth.yaml
    python projects/DesignExploration/explore_design.py --task detection \\
        --data voc_synth_train,voc_synth_val --budget 8 --latency-engine openvino \\
        --requirements projects/DesignExploration/configs/cpu_detection.yaml

The prototype (--prototype; default: the uniform prototype of design_exploration.space)
is trained from scratch; successive generators of module cells then propose candidates,
each inheriting its parent's weights and fine-tuned briefly, ranked by NetScore (or, with
"objective: latency" in the requirements, by the latency score) subject to the
requirements (accuracy floor, parameter / mult-add / latency budgets, as numbers or
relative to peers such as {of: ShuffleNetV2-FPN}, which are measured once at the start).
Latency is the median single-image inference time of the whole model on this machine,
in --latency-engine (detection: the config's test size and proposals/detections; with
several engines, the objective takes the first's and a latency budget holds in each). The best
candidate of each generator that improves on all before it joins the family; the family
is retrained from scratch on the prototype's schedule, and members whose retrained
figures miss a requirement, or the score of a prototype that meets them, are reported as
not kept.
--output receives the family's spec files (loadable by tools/train_classifier.py
--variant FILE and by MODEL.ATTONET.SPEC FILE), their weights, report.md, report.json and
family.png. The search state is saved after every candidate: --resume continues where a
search stopped, with the same results as an uninterrupted run (same flags; the budget may
be raised).
"""

import argparse
import dataclasses
import logging
import os
import sys

import torch

from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers the AttoNet backbones and datasets)
from atto_detectron.engine import parse_args_any_order

from . import (
    LATENCY_ENGINES,
    OBJECTIVES,
    ClassificationEvaluator,
    ClassificationSearchConfig,
    DesignExplorer,
    DesignRequirements,
    DetectionEvaluator,
    DetectionSearchConfig,
    ExplorerSettings,
    GeneratorSettings,
    LatencySettings,
    family_summary,
    format_family_table,
    get_prototype,
    load_requirements,
    parse_budget,
    write_report,
)

logger = logging.getLogger("design_exploration")

DEFAULT_DETECTION_CONFIG = "configs/synth/atto_maskrcnn_synth.yaml"


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(),
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task", choices=["classification", "detection"], default="classification")
    parser.add_argument(
        "--data",
        default=None,
        help="classification: ImageFolder dataset folder (train/, val/); detection: "
        "TRAIN,TEST registered dataset names (default: the config's DATASETS)",
    )
    parser.add_argument(
        "--budget",
        required=True,
        help="candidates to evaluate after the prototype (e.g. 12), or minutes of search "
        "(e.g. 30m, 2h; not reproducible)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: output/design_<task>")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in --output (or start one there if there is none)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads (default: torch's choice)"
    )

    req = parser.add_argument_group("requirements (the flags override the file)")
    req.add_argument("--requirements", metavar="FILE", help="yaml/json requirements file")
    req.add_argument("--min-accuracy", type=float, help="percent: top-1 or box AP50")
    req.add_argument("--min-mask-accuracy", type=float, help="percent: mask AP50 (detection)")
    req.add_argument("--max-params", help="e.g. 250000 or 250K")
    req.add_argument("--max-mult-adds", help="at the task's input size, e.g. 1.2M")
    req.add_argument(
        "--max-latency-ms",
        type=float,
        help="median, one image, this machine, in each --latency-engine",
    )
    req.add_argument(
        "--objective",
        choices=OBJECTIVES,
        help="what ranks the candidates: netscore (accuracy, parameters, mult-adds) or latency "
        "(accuracy, parameters, measured latency); default: the file's, else netscore",
    )

    lat = parser.add_argument_group("latency measurement (recorded in the search state)")
    lat_defaults = LatencySettings()
    lat.add_argument(
        "--latency-engine",
        choices=LATENCY_ENGINES,
        nargs="+",
        default=[lat_defaults.engine],
        help="detection: pytorch (eager), openvino (the plugin's ONNX export on OpenVINO's "
        "CPU plugin) or openvino-int8 (that export quantized by NNCF); classification: "
        "pytorch. With several, the first is the objective's and a latency budget holds in "
        "each",
    )
    lat.add_argument(
        "--latency-runs", type=int, default=lat_defaults.runs, help="timed runs (median)"
    )
    lat.add_argument("--latency-warmup", type=int, default=lat_defaults.warmup)
    lat.add_argument("--latency-threads", type=int, default=lat_defaults.threads)
    lat.add_argument(
        "--latency-at",
        metavar="CONFIG",
        help="--task detection: measure latency at this Detectron2 config's operating point "
        "(INPUT.MIN_SIZE_TEST, MAX_SIZE_TEST, MODEL.RPN.POST_NMS_TOPK_TEST, "
        "TEST.DETECTIONS_PER_IMAGE), e.g. configs/atto_maskrcnn_voc.yaml for 800 px and 1000 "
        "proposals; default: the search config's",
    )

    search = parser.add_argument_group("prototype and search")
    search.add_argument(
        "--prototype",
        default="uniform",
        help="uniform (the prototype with uniform cells), A..D, or a spec file",
    )
    search.add_argument(
        "--prototype-width", type=int, default=32, help="base width of the uniform prototype"
    )
    defaults = ExplorerSettings()
    search.add_argument(
        "--population", type=int, default=defaults.population, help="candidates per generator"
    )
    search.add_argument(
        "--elite",
        type=int,
        default=defaults.num_elite,
        help="best candidates that steer the next generator",
    )
    search.add_argument(
        "--no-retrain",
        action="store_true",
        help="report the family's search figures; no retraining",
    )
    search.add_argument("--name-prefix", default=defaults.name_prefix)
    search.add_argument(
        "--depth-change",
        type=int,
        default=defaults.generator.depth_change,
        metavar="K",
        help="let each stage have up to K modules more or fewer than the prototype's "
        "(at least 1): where the strides fall among the modules (default: fixed depths)",
    )
    search.add_argument(
        "--search-neck",
        action="store_true",
        help="--task detection: also explore the FPN's width (multiples of 32, 1/3 to 4/3 "
        "of the config's) and whether it uses res2 (levels P2-P6 or P3-P6)",
    )

    cls = parser.add_argument_group("classification training")
    c = ClassificationSearchConfig(data_root="")
    cls.add_argument("--image-size", type=int, default=c.image_size)
    cls.add_argument("--num-classes", type=int, default=None)
    cls.add_argument("--batch-size", type=int, default=c.batch_size)
    cls.add_argument("--workers", type=int, default=c.workers)
    cls.add_argument("--min-crop-scale", type=float, default=c.min_crop_scale)
    cls.add_argument(
        "--epochs",
        type=int,
        default=c.scratch_epochs,
        help="from-scratch schedule (prototype, family)",
    )
    cls.add_argument("--lr", type=float, default=c.lr)
    cls.add_argument("--warmup-epochs", type=float, default=c.warmup_epochs)
    cls.add_argument("--finetune-epochs", type=int, default=c.finetune_epochs)
    cls.add_argument("--finetune-lr", type=float, default=c.finetune_lr)
    cls.add_argument("--weight-decay", type=float, default=c.weight_decay)
    cls.add_argument("--label-smoothing", type=float, default=c.label_smoothing)

    det = parser.add_argument_group("detection training")
    d = DetectionSearchConfig(config_file="")
    det.add_argument("--config-file", default=DEFAULT_DETECTION_CONFIG, metavar="FILE")
    det.add_argument(
        "--iters",
        type=int,
        default=None,
        help="from-scratch schedule (default: the config's MAX_ITER)",
    )
    det.add_argument("--finetune-iters", type=int, default=d.finetune_iters)
    det.add_argument("--finetune-lr-factor", type=float, default=d.finetune_lr_factor)
    det.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="detection config overrides: KEY VALUE ...",
    )
    return parser


def build_requirements(args) -> DesignRequirements:
    requirements = load_requirements(args.requirements) if args.requirements else None
    requirements = requirements or DesignRequirements()
    # Counts may carry a K/M/G suffix ("250K"): DesignRequirements parses them.
    return requirements.updated(
        min_accuracy=args.min_accuracy,
        min_mask_accuracy=args.min_mask_accuracy,
        max_params=args.max_params,
        max_mult_adds=args.max_mult_adds,
        max_latency_ms=args.max_latency_ms,
        objective=args.objective,
    )


def build_evaluator(args):
    if args.task == "classification":
        if not args.data:
            raise ValueError("--task classification needs --data: an ImageFolder dataset folder")
        config = ClassificationSearchConfig(
            data_root=args.data,
            image_size=args.image_size,
            num_classes=args.num_classes,
            batch_size=args.batch_size,
            workers=args.workers,
            min_crop_scale=args.min_crop_scale,
            lr=args.lr,
            weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing,
            warmup_epochs=args.warmup_epochs,
            scratch_epochs=args.epochs,
            finetune_epochs=args.finetune_epochs,
            finetune_lr=args.finetune_lr,
        )
        return ClassificationEvaluator(config)
    opts = list(args.opts)
    if args.data:
        names = [n.strip() for n in args.data.split(",")]
        if len(names) != 2 or not all(names):
            raise ValueError(f"--data {args.data!r}: give TRAIN,TEST dataset names for detection")
        opts += ["DATASETS.TRAIN", f"('{names[0]}',)", "DATASETS.TEST", f"('{names[1]}',)"]
    config = DetectionSearchConfig(
        config_file=args.config_file,
        opts=tuple(opts),
        scratch_iters=args.iters,
        finetune_iters=args.finetune_iters,
        finetune_lr_factor=args.finetune_lr_factor,
    )
    return DetectionEvaluator(config)


def main(argv=None):
    args = parse_args_any_order(get_parser(), argv)
    if args.opts and args.task != "detection":
        raise ValueError(f"config overrides {args.opts} only apply to --task detection")
    setup_logger(name="design_exploration")
    if args.threads:
        torch.set_num_threads(args.threads)
    output = args.output or f"output/design_{args.task}"
    budget = parse_budget(args.budget)
    requirements = build_requirements(args)
    if not any(v is not None for v in requirements.to_dict().values()):
        logger.warning("No requirements given: every candidate passes the indicator.")
    prototype = get_prototype(args.prototype, base_width=args.prototype_width)
    settings = ExplorerSettings(
        population=args.population,
        num_elite=args.elite,
        seed=args.seed,
        retrain=not args.no_retrain,
        name_prefix=args.name_prefix,
        generator=dataclasses.replace(
            GeneratorSettings(), depth_change=args.depth_change, search_neck=args.search_neck
        ),
        latency=latency_settings(args),
    )
    explorer = DesignExplorer(
        build_evaluator(args), prototype, requirements, output, settings, resume=args.resume
    )
    logger.info("Design search in %s: %s, budget %s", output, args.task, budget)
    state = explorer.run(budget, progress=not args.no_progress)
    paths = write_report(state, output)
    print(format_family_table(family_summary(state)), flush=True)
    print(f"Report: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    print(f"Spec files: {os.path.join(output, 'family')}/*.yaml")
    return state


def latency_settings(args) -> LatencySettings:
    """How the latency flags ask latencies to be measured (the first engine ranks)."""
    return LatencySettings(
        engine=args.latency_engine[0],
        check_engines=tuple(args.latency_engine[1:]),
        runs=args.latency_runs,
        warmup=args.latency_warmup,
        threads=args.latency_threads,
        **latency_operating_point(args),
    )


def latency_operating_point(args) -> dict:
    """The LatencySettings fields of ``--latency-at`` (none without it)."""
    if not args.latency_at:
        return {}
    if args.task != "detection":
        raise ValueError("--latency-at gives a detector's operating point: use --task detection")
    if not os.path.isfile(args.latency_at):
        raise FileNotFoundError(
            f"--latency-at {args.latency_at}: no such config; give a Detectron2 yaml such as "
            f"configs/atto_maskrcnn_voc.yaml"
        )
    from atto_detectron.config import load_config

    return LatencySettings.operating_point_of(load_config(args.latency_at))


def cli():
    """Runs :func:`main` with one-line errors for bad input (exit status 2)."""
    try:
        main()
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"explore_design.py: error: {e}", file=sys.stderr)
        sys.exit(2)

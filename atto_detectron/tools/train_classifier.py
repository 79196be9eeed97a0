"""
Trains and evaluates an AttoNet classifier on an ImageFolder dataset (ImageNet50 in the
paper): DATA_ROOT/train/<class>/*.jpg and DATA_ROOT/val/<class>/*.jpg.

    python tools/train_classifier.py --variant A --data-root datasets/imagenet50 --num-classes 51
    python tools/train_classifier.py --variant A --data-root ... --num-gpus 8      # 8 GPUs
    python tools/train_classifier.py --variant A --data-root ... --resume          # continue
    python tools/train_classifier.py --variant A --data-root ... --eval-only \
        --weights output/classifier_AttoNet-A/model_final.pth

Writes checkpoints, metrics.json and results.json (top-1, top-5, parameters,
mult-adds, NetScore) to --output. --num-gpus is the number of processes: GPUs (NCCL)
where CUDA is available, CPU processes (Gloo) otherwise. The defaults are the usual
ImageNet recipe for mobile networks (the paper does not state its own): SGD with Nesterov
momentum 0.9, lr 0.1 per 256 images, 1 warmup epoch, cosine decay over 90 epochs,
weight decay 4e-5, label smoothing 0.1, RandomResizedCrop 224 + flip; validation
resizes to 256 and center-crops 224.
"""

import argparse
import logging
import os
import sys

import torch

from detectron2.engine import launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers the AttoNet backbones)
from atto_detectron import build_attonet_classifier, get_attonet_spec
from atto_detectron.checkpoint import AtomicCheckpointer
from atto_detectron.classification import (
    ClassifierTrainConfig,
    ClassifierTrainer,
    build_classification_data,
    check_imagefolder_root,
    classifier_results,
    evaluate_classifier,
    format_classifier_results,
    write_classifier_results,
)
from atto_detectron.engine import set_cpu_threads

logger = logging.getLogger("atto_detectron")


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = parser.add_argument_group("model and data")
    model.add_argument(
        "--variant",
        default="A",
        help="A..D (AttoNet-A..D of Table 1) or the path of an AttoNet spec file (.yaml/.json)",
    )
    model.add_argument("--data-root", required=True, metavar="DIR", help="ImageFolder dataset")
    model.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="outputs of the FC layer (default: the number of class folders; the paper's "
        "ImageNet50 classifiers have 51)",
    )
    model.add_argument("--image-size", type=int, default=224, help="training/validation crop")
    model.add_argument(
        "--min-crop-scale",
        type=float,
        default=0.08,
        help="smallest area fraction of RandomResizedCrop (default: ImageNet's 0.08)",
    )
    model.add_argument("--workers", type=int, default=4, help="data loader processes per process")

    solver = parser.add_argument_group("training")
    defaults = ClassifierTrainConfig()
    solver.add_argument("--epochs", type=int, default=defaults.epochs)
    solver.add_argument(
        "--batch-size", type=int, default=256, help="images per iteration, all processes together"
    )
    solver.add_argument("--lr", type=float, default=defaults.base_lr, help="base learning rate")
    solver.add_argument("--momentum", type=float, default=defaults.momentum)
    solver.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    solver.add_argument("--schedule", choices=["cosine", "step"], default=defaults.lr_schedule)
    solver.add_argument(
        "--lr-steps",
        type=int,
        nargs="+",
        default=list(defaults.lr_steps),
        metavar="EPOCH",
        help="epochs at which --schedule step multiplies the lr by --lr-gamma",
    )
    solver.add_argument("--lr-gamma", type=float, default=defaults.lr_gamma)
    solver.add_argument("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    solver.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    solver.add_argument(
        "--eval-period",
        type=int,
        default=defaults.eval_period,
        metavar="EPOCHS",
        help="evaluate every this many epochs (0: at the end only)",
    )
    solver.add_argument(
        "--checkpoint-period", type=int, default=defaults.checkpoint_period, metavar="EPOCHS"
    )
    solver.add_argument("--seed", type=int, default=0)
    solver.add_argument("--no-progress", action="store_true", help="no progress bar")

    run = parser.add_argument_group("run")
    run.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="checkpoints, metrics.json, results.json (default: output/classifier_<model>)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --output, if there is one",
    )
    run.add_argument(
        "--weights",
        default="",
        metavar="FILE",
        help="initial weights (training) or the weights to evaluate (--eval-only)",
    )
    run.add_argument("--eval-only", action="store_true", help="evaluate --weights, no training")
    run.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: GPUs with CUDA, else CPU processes (Gloo)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per process (default: the cores shared among the processes); "
        "1 is fastest for small models and images on a busy machine",
    )
    run.add_argument("--num-machines", type=int, default=1)
    run.add_argument("--machine-rank", type=int, default=0)
    run.add_argument(
        "--dist-url",
        default="auto",
        help="tcp://HOST:PORT of machine 0 for multi-machine runs (default: a free local port)",
    )
    return parser


def train_config(args) -> ClassifierTrainConfig:
    return ClassifierTrainConfig(
        epochs=args.epochs,
        base_lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        lr_schedule=args.schedule,
        lr_steps=args.lr_steps,
        lr_gamma=args.lr_gamma,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        eval_period=args.eval_period,
        checkpoint_period=args.checkpoint_period,
        seed=args.seed,
        progress=not args.no_progress,
    )


def check_args(args):
    """Checks everything that can be checked before processes start; returns the classes."""
    spec = get_attonet_spec(args.variant)
    classes = check_imagefolder_root(args.data_root)
    if args.num_classes is not None and args.num_classes < len(classes):
        raise ValueError(
            f"--num-classes {args.num_classes} is fewer than the {len(classes)} class folders "
            f"of {os.path.join(args.data_root, 'train')}."
        )
    if args.eval_only and not args.weights:
        raise ValueError("--eval-only needs --weights FILE (e.g. OUTPUT/model_final.pth).")
    if args.weights and not os.path.isfile(args.weights):
        raise FileNotFoundError(f"--weights {args.weights} does not exist.")
    train_config(args)  # raises on invalid solver settings
    if args.output is None:
        args.output = os.path.join("output", f"classifier_{spec.name}")
    return classes


def main(args):
    """Trains (or evaluates) in this process; run it through detectron2's ``launch``."""
    setup_logger(args.output, distributed_rank=comm.get_rank(), name="atto_detectron")
    setup_logger(args.output, distributed_rank=comm.get_rank(), name="detectron2", abbrev_name="d2")
    set_cpu_threads(args.threads)
    data = build_classification_data(
        args.data_root,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        seed=args.seed,
        min_crop_scale=args.min_crop_scale,
    )
    num_classes = args.num_classes or data.num_classes
    torch.manual_seed(args.seed)  # the same initial weights in every process
    model = build_attonet_classifier(args.variant, num_classes=num_classes)
    config = train_config(args)
    if args.eval_only:
        device = f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
        AtomicCheckpointer(model.to(device)).load(args.weights, checkpointables=[])
        metrics = evaluate_classifier(model, data.val)
    else:
        trainer = ClassifierTrainer(model, data.train, data.val, config, output_dir=args.output)
        trainer.resume_or_load(args.weights, resume=args.resume)
        metrics = trainer.train()
    if comm.is_main_process():
        record = classifier_results(
            model,
            metrics,
            args.image_size,
            model.spec.name,
            num_classes=num_classes,
            classes=list(data.classes),
            data_root=os.path.abspath(args.data_root),
            weights=(
                args.weights if args.eval_only else os.path.join(args.output, "model_final.pth")
            ),
            train_config=None if args.eval_only else config.to_dict(),
            num_processes=comm.get_world_size(),
        )
        path = write_classifier_results(record, os.path.join(args.output, "results.json"))
        print(format_classifier_results(record) + f"\n(written to {path})", flush=True)
    return metrics


def cli(argv=None):
    """The command line: bad arguments are one line on stderr."""
    args = get_parser().parse_args(argv)
    try:
        check_args(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )

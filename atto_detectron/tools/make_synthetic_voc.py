"""
Writes the generated VOC-layout instance segmentation data (the embedded default that
`make demo` trains on) as <out>/VOC2012/{JPEGImages, SegmentationObject,
SegmentationClass, Annotations, ImageSets/Segmentation/{train,val,trainval}.txt}.

    python tools/make_synthetic_voc.py --out datasets/VOCsynth --train 1000 --val 200

Registered as voc_synth_train / voc_synth_val when <out> is $DETECTRON2_DATASETS/VOCsynth
(default ./datasets/VOCsynth). The same --seed always writes the same files.
"""

import argparse
import os
import sys
import time

from atto_detectron.synthetic import SYNTHETIC_CLASSES, write_synthetic_voc


def get_parser():
    default_out = os.path.join(
        os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")), "VOCsynth"
    )
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    parser.add_argument("--train", type=int, default=1000, help="training images")
    parser.add_argument("--val", type=int, default=200, help="validation images")
    parser.add_argument(
        "--holdout",
        type=int,
        default=0,
        help="images of a 'holdout' split: more training-stream images, never in 'train', "
        "to tune a recipe on (default 0: no holdout.txt)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long-side", type=int, default=256, help="longer image side, pixels")
    parser.add_argument(
        "--workers", type=int, default=None, help="drawing processes (default: one per CPU)"
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    if min(args.train, args.val, args.holdout) < 0 or args.long_side < 32:
        sys.exit("--train, --val and --holdout must be >= 0 and --long-side >= 32")
    start = time.perf_counter()
    voc_root = write_synthetic_voc(
        args.out,
        num_train=args.train,
        num_val=args.val,
        seed=args.seed,
        long_side=args.long_side,
        workers=args.workers,
        progress=True,
        num_holdout=args.holdout,
    )
    print(
        f"Wrote {args.train} train + {args.holdout} holdout + {args.val} val images "
        f"({len(SYNTHETIC_CLASSES)} classes: "
        f"{', '.join(SYNTHETIC_CLASSES)}) to {voc_root} in {time.perf_counter() - start:.1f}s"
    )


def cli(argv=None):
    """The command line."""
    main(argv)

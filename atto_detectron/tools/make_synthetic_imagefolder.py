"""
Generates a small ImageFolder classification dataset (OUT/train/<class>/*.jpg,
OUT/val/<class>/*.jpg) of coloured shapes and textures on noisy backgrounds: learnable
by an AttoNet in minutes on a CPU, and the same for the same seed.

    python tools/make_synthetic_imagefolder.py --out datasets/synth_imagefolder
    python tools/make_synthetic_imagefolder.py --out DIR --num-classes 16 --train-per-class 200
"""

import argparse
import os
import sys

from atto_detectron.synthetic import (
    MAX_SYNTHETIC_CLASSES,
    make_synthetic_imagefolder,
)


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=10,
        help=f"2..{MAX_SYNTHETIC_CLASSES} (shape, colour) classes (default: 10)",
    )
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=30)
    parser.add_argument("--image-size", type=int, default=64, help="side of the images, pixels")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        description = make_synthetic_imagefolder(
            args.out,
            num_classes=args.num_classes,
            train_per_class=args.train_per_class,
            val_per_class=args.val_per_class,
            image_size=args.image_size,
            seed=args.seed,
        )
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    classes = description["classes"]
    print(
        f"wrote {len(classes)} classes x ({args.train_per_class} train + {args.val_per_class} "
        f"val) {args.image_size}x{args.image_size} images to {os.path.abspath(args.out)}: "
        f"{', '.join(classes)}"
    )


def cli(argv=None):
    """The command line."""
    main(argv)

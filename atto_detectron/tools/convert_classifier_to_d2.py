"""
Converts an AttoNet classifier checkpoint (tools/train_classifier.py) into Detectron2
backbone weights, to initialize Atto-MaskRCNN through MODEL.WEIGHTS.

    python tools/convert_classifier_to_d2.py output/classifier_AttoNet-A/model_final.pth \
        attonet_a_imagenet50.pkl
    python tools/train_net.py --config-file configs/atto_maskrcnn_voc.yaml \
        MODEL.WEIGHTS attonet_a_imagenet50.pkl MODEL.ATTONET.NORM FrozenBN \
        MODEL.BACKBONE.FREEZE_AT 2

The file has the format of Detectron2's tools/convert-torchvision-to-d2.py (pickled
numpy arrays, "matching_heuristics": True): its names are the backbone's own
("stem.conv1.weight", "stages.res2.0.compression.weight", ...), which Detectron2's
checkpointer matches to backbone.bottom_up.* (FPN) or backbone.* (plain backbone). The
classifier's final norm and FC are left out; Detectron2 then reports the FPN and the
heads as "not found in the checkpoint", which is expected. The classifier sees RGB
images; by default the stem is converted for Detectron2's BGR input (the configs here).
"""

import argparse
import sys

from atto_detectron.checkpoint import CheckpointError
from atto_detectron.classification.convert import INPUT_FORMATS, convert_classifier_checkpoint


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="classifier checkpoint (.pth) or state dict")
    parser.add_argument("output", help="Detectron2 weights to write (.pkl)")
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="BGR",
        help="the detector's INPUT.FORMAT (default BGR, Detectron2's and these configs'); "
        "RGB keeps the classifier's channel order",
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        summary = convert_classifier_checkpoint(args.checkpoint, args.output, args.input_format)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    print(
        f"wrote {len(summary['converted'])} backbone weights ({args.input_format} input) to "
        f"{args.output}; left out {len(summary['dropped'])} classifier entries "
        f"(final norm, FC, BatchNorm counters)"
    )


def cli(argv=None):
    """The command line."""
    main(argv)

#!/usr/bin/env python
"""
Exports Atto-MaskRCNN (any config of this repository, or its backbone alone) to TorchScript
or ONNX for deployment, and checks the exported model against PyTorch.

    python tools/export_model.py --config-file configs/atto_maskrcnn_voc.yaml \
        --format onnx --output output/export/atto_maskrcnn_onnx \
        MODEL.WEIGHTS output/atto_maskrcnn_voc/model_final.pth
    python tools/export_model.py --config-file configs/atto_maskrcnn_voc_D.yaml \
        --format torchscript --backbone-only --output output/export/attonet_d_fpn_ts

Batch norms that follow a conv are folded into it first (--no-fuse keeps them). The
export folder holds model.ts or model.onnx and export_info.json (inputs, outputs, their
schema, preprocessing); atto_detectron.deploy.ExportedModel runs it from Python.
"""

import argparse
import logging
import os
import sys
import warnings

import torch

from detectron2.data import detection_utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model

import atto_detectron  # noqa: F401  (registers the AttoNet backbones)
from atto_detectron.checkpoint import AtomicCheckpointer, CheckpointError
from atto_detectron.config import load_config
from atto_detectron.deploy import (
    DEFAULT_ONNX_OPSET,
    EXPORT_FORMATS,
    EXPORT_METHODS,
    ExportedModel,
    backbone_input,
    export_model,
    compare_outputs,
    outputs_match,
    prepare_for_export,
    reference_outputs,
)
from atto_detectron.deploy.inputs import image_tensor, synthetic_image

logger = logging.getLogger("atto_detectron.export")


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    parser.add_argument(
        "--export-method", choices=EXPORT_METHODS, default="tracing",
        help="tracing (TorchScript or ONNX; the traced graph takes any input size) or "
        "scripting (TorchScript only)",
    )  # fmt: skip
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the export")
    parser.add_argument(
        "--backbone-only", action="store_true",
        help="export the backbone (AttoNet + FPN: normalized, padded images -> p2..p6)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-image", metavar="FILE",
        help="image to trace and check with, resized as at test time (default: a "
        "synthetic image at the config's test size)",
    )  # fmt: skip
    parser.add_argument("--no-fuse", action="store_true", help="keep BN layers unfused")
    parser.add_argument("--opset", type=int, default=DEFAULT_ONNX_OPSET, help="ONNX opset")
    parser.add_argument(
        "--no-check", action="store_true",
        help="skip running the exported model against PyTorch on the sample image and on "
        "a second image of another size",
    )  # fmt: skip
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[],
        help="KEY VALUE pairs that modify the config, e.g. MODEL.WEIGHTS model_final.pth",
    )  # fmt: skip
    return parser


def load_model(cfg):
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        if "://" not in cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS):
            sys.exit(f"error: MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r}: no such file")
        # The project's checkpointer: it reads .pth files with weights_only=True.
        try:
            AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)
        except CheckpointError as e:
            sys.exit(f"error: MODEL.WEIGHTS: {e}")
    else:
        logger.warning("MODEL.WEIGHTS is empty: exporting randomly initialized weights")
    return model.eval()


def sample_image(cfg, path=None) -> torch.Tensor:
    """``(3, H, W)`` float image resized as DefaultPredictor does at the test size."""
    if path is None:
        short = cfg.INPUT.MIN_SIZE_TEST
        image = synthetic_image(short, int(round(short * 4 / 3)))
    else:
        if not os.path.isfile(path):
            sys.exit(f"error: --sample-image {path!r}: no such file")
        image = detection_utils.read_image(path, format=cfg.INPUT.FORMAT)
    resize = T.ResizeShortestEdge(
        [cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST
    )
    return image_tensor(resize.get_transform(image).apply_image(image))


def check_export(model, exported, images, backbone_only) -> bool:
    """Runs both models on each image and logs the largest difference per output."""
    ok = True
    for image in images:
        size = "x".join(str(s) for s in image.shape[-2:])
        reference = reference_outputs(model, image, backbone_only)
        try:
            inputs = backbone_input(model, image) if backbone_only else image
            comparison = compare_outputs(reference, exported(inputs))
        except Exception as e:  # the runtime's own error is the finding
            logger.error(f"check on a {size} image: the exported model failed: {e}")
            ok = False
            continue
        for name, (diff, value) in comparison.items():
            good = outputs_match({name: (diff, value)})
            ok &= good
            logger.info(
                f"check on a {size} image: {name}: max |diff| {diff:.3g} "
                f"(max |value| {value:.3g}){'' if good else '  <-- too large'}"
            )
    return ok


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Tracing Detectron2's models warns about every shape turned into a constant; the
    # check below is what tells whether the graph generalizes.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    if args.export_method == "scripting" and args.format != "torchscript":
        sys.exit("error: --export-method scripting exports TorchScript only (--format torchscript)")
    if not os.path.isfile(args.config_file):
        sys.exit(f"error: --config-file {args.config_file!r}: no such file")

    cfg = load_config(args.config_file, args.opts, device="cpu")
    model = prepare_for_export(load_model(cfg), fuse=not args.no_fuse)
    image = sample_image(cfg, args.sample_image)
    info = {
        "config_file": args.config_file,
        "opts": list(args.opts),
        "fused_bn": not args.no_fuse,
        "input_format": cfg.INPUT.FORMAT,
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "size_divisibility": model.backbone.size_divisibility,
        "min_size_test": cfg.INPUT.MIN_SIZE_TEST,
        "max_size_test": cfg.INPUT.MAX_SIZE_TEST,
    }
    path = export_model(
        model,
        image,
        args.output,
        export_format=args.format,
        method=args.export_method,
        backbone_only=args.backbone_only,
        opset=args.opset,
        info=info,
    )
    logger.info(f"wrote {path}")
    if args.no_check:
        return 0

    # A second image of another size (and aspect) shows whether the exported graph
    # generalizes beyond the traced shape.
    height, width = image.shape[-2:]
    other = image_tensor(synthetic_image(max(64, height * 3 // 4), max(64, width * 5 // 8), seed=1))
    exported = ExportedModel(args.output)
    if not check_export(model, exported, [image, other], args.backbone_only):
        logger.error(f"{path}: the exported model does not match PyTorch (see above)")
        return 1
    logger.info("the exported model matches PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())

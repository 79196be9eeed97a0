#!/usr/bin/env python
"""
Exports Atto-MaskRCNN (any config of this repository, or its backbone alone) to TorchScript
or ONNX for deployment, checks the exported model against PyTorch, and optionally
quantizes it to INT8 and measures its AP.

    python tools/export_model.py --config-file configs/atto_maskrcnn_voc.yaml \
        --format onnx --output output/export/atto_maskrcnn_onnx \
        MODEL.WEIGHTS output/atto_maskrcnn_voc/model_final.pth
    python tools/export_model.py --config-file configs/atto_maskrcnn_voc_D.yaml \
        --format torchscript --backbone-only --output output/export/attonet_d_fpn_ts
    python tools/export_model.py --config-file configs/synth/atto_maskrcnn_synth.yaml \
        --format onnx --int8 --run-eval --output output/export/atto_synth_onnx \
        MODEL.WEIGHTS output/atto_maskrcnn_synth/model_final.pth

Batch norms that follow a conv are folded into it first (--no-fuse keeps them). The
export folder holds model.ts or model.onnx and export_info.json (inputs, outputs, their
schema, preprocessing); atto_detectron.deploy.ExportedModel runs it from Python, an ONNX
model with onnxruntime or OpenVINO. --int8 adds the INT8 models of onnxruntime and
OpenVINO (NNCF), calibrated on training images of the config (folders onnxruntime-int8/
and openvino-int8/; see atto_detectron.deploy.quantize). --run-eval runs every engine of
the export on cfg.DATASETS.TEST[0] with Detectron2's COCOEvaluator, as Detectron2's
tools/deploy/export_model.py does, and writes the APs to evaluation.json.
"""

import argparse
import copy
import json
import logging
import math
import os
import statistics
import sys
import time
import warnings

import torch

from detectron2.data import build_detection_test_loader, detection_utils
from detectron2.evaluation import COCOEvaluator, inference_on_dataset
from detectron2.modeling import build_model

import atto_detectron  # noqa: F401  (registers the AttoNet backbones)
from atto_detectron.checkpoint import AtomicCheckpointer, CheckpointError
from atto_detectron.config import load_config
from atto_detectron.deploy import (
    DEFAULT_ONNX_OPSET,
    EXPORT_FORMATS,
    EXPORT_METHODS,
    FORMAT_ENGINES,
    ExportedModel,
    backbone_input,
    compare_outputs,
    export_model,
    outputs_match,
    prepare_for_export,
    reference_outputs,
)
from atto_detectron.deploy.calibration import (
    DEFAULT_CALIBRATION_IMAGES,
    calibration_images,
    resize_for_test,
)
from atto_detectron.deploy.inputs import image_tensor, synthetic_image
from atto_detectron.deploy.int8_placement import int8_agreement
from atto_detectron.deploy.quantize import export_engines, quantize_export
from atto_detectron.engine import load_ema_weights_if_enabled, parse_args_any_order
from atto_detectron.engine.results import summarize_ap
from atto_detectron.modeling import detector_postprocess

logger = logging.getLogger("atto_detectron.export")
EVAL_FILE = "evaluation.json"


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="torchscript")
    parser.add_argument(
        "--export-method",
        choices=EXPORT_METHODS,
        default="tracing",
        help="tracing (TorchScript or ONNX; the traced graph takes any input size) or "
        "scripting (TorchScript only)",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the export")
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="export the backbone (AttoNet + FPN: normalized, padded images -> p2..p6)",
    )
    parser.add_argument(
        "--sample-image",
        metavar="FILE",
        help="image to trace and check with, resized as at test time (default: a "
        "synthetic image at the config's test size)",
    )
    parser.add_argument("--no-fuse", action="store_true", help="keep BN layers unfused")
    parser.add_argument("--opset", type=int, default=DEFAULT_ONNX_OPSET, help="ONNX opset")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip running the exported model against PyTorch on the sample image and on "
        "a second image of another size",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write INT8 models (ONNX exports): onnxruntime's static QDQ model in "
        "<output>/onnxruntime-int8 and NNCF's OpenVINO model in <output>/openvino-int8",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        metavar="N",
        help="images of cfg.DATASETS.TRAIN that calibrate --int8, evenly spaced over the "
        "set and resized as at test time (default %(default)s)",
    )
    parser.add_argument(
        "--run-eval",
        action="store_true",
        help=f"run every engine of the export (TorchScript; onnxruntime and OpenVINO, and "
        f"their INT8 models with --int8) on cfg.DATASETS.TEST[0] with COCOEvaluator; "
        f"writes box and mask AP per engine to <output>/{EVAL_FILE}",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="KEY VALUE pairs that modify the config, e.g. MODEL.WEIGHTS model_final.pth",
    )
    return parser


def load_model(cfg):
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        if "://" not in cfg.MODEL.WEIGHTS and not os.path.isfile(cfg.MODEL.WEIGHTS):
            sys.exit(f"error: MODEL.WEIGHTS {cfg.MODEL.WEIGHTS!r}: no such file")
        # The project's checkpointer: it reads .pth files with weights_only=True.
        try:
            AtomicCheckpointer(model).load(cfg.MODEL.WEIGHTS)
            load_ema_weights_if_enabled(model, cfg)
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
    return resize_for_test(cfg, image)


def check_export(model, exported, images, backbone_only) -> bool:
    """Runs both models on each image and logs the largest difference per output."""
    ok = True
    for image in images:
        size = "x".join(str(s) for s in image.shape[-2:])
        where = f"check of {exported.engine} on a {size} image"
        reference = reference_outputs(model, image, backbone_only)
        try:
            inputs = backbone_input(model, image) if backbone_only else image
            comparison = compare_outputs(reference, exported(inputs))
        except Exception as e:  # the runtime's own error is the finding
            logger.error(f"{where}: the exported model failed: {e}")
            ok = False
            continue
        for name, (diff, value) in comparison.items():
            good = outputs_match({name: (diff, value)})
            ok &= good
            logger.info(
                f"{where}: {name}: max |diff| {diff:.3g} "
                f"(max |value| {value:.3g}){'' if good else '  <-- too large'}"
            )
    return ok


def write_int8(cfg, model, args, image) -> None:
    """The INT8 models of the export, and how close each is to fp32 on the sample image."""
    try:
        images = calibration_images(cfg, args.calibration_images)
    except ValueError as e:
        sys.exit(f"error: --int8: {e}")
    names = list(cfg.DATASETS.TRAIN)
    described = (
        f"{len(images)} images of DATASETS.TRAIN {names}, evenly spaced over the set, "
        f"resized as at test time"
    )
    logger.info(f"calibrating the INT8 models on {described}")
    inputs = [backbone_input(model, i) if args.backbone_only else i for i in images]
    reference = reference_outputs(model, image, args.backbone_only)
    sample = backbone_input(model, image) if args.backbone_only else image
    for engine, folder in quantize_export(args.output, inputs, calibration=described).items():
        agreement = int8_agreement(reference, ExportedModel(folder)(sample))
        figures = ", ".join(f"{k} {v:.3g}" for k, v in agreement.items())
        logger.info(f"wrote {folder}; against fp32 on the sample image: {figures}")


class ExportedDetector:
    """
    A Detectron2 model's interface around an exported detector, for
    ``inference_on_dataset``: a list of dataset dicts (``"image"`` resized as at test
    time, ``"height"``, ``"width"``) in, ``[{"instances": ...}]`` out, resized to the
    original image with full-image masks (``detector_postprocess``).

    ``exported`` is an :class:`ExportedModel`, or any callable with its interface: the
    PyTorch model itself goes through :func:`reference_outputs`, so that the two differ
    in the engine alone.
    """

    def __init__(self, exported):
        self.exported = exported

    def __call__(self, inputs):
        outputs = []
        for record in inputs:
            instances = self.exported(record["image"].float())
            instances = detector_postprocess(instances, record["height"], record["width"])
            outputs.append({"instances": instances})
        return outputs


class _CallTimer:
    # inference_on_dataset's callbacks around each model call.
    def __init__(self):
        self.seconds = []
        self._start = 0.0

    def start(self):
        self._start = time.perf_counter()

    def stop(self):
        self.seconds.append(time.perf_counter() - self._start)


def _percent(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def _finite(value):
    # COCOEvaluator reports NaN where there is nothing to score; JSON has null for that.
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_eval(cfg, export_dir: str, pytorch_model=None) -> dict:
    """
    Evaluates ``pytorch_model`` (the weights as loaded, before any fusion) and every
    engine of ``export_dir`` (:func:`export_engines`) on ``cfg.DATASETS.TEST[0]``, the
    same images through the same pre- and post-processing, and writes
    ``evaluation.json`` there.

    Returns:
        dict: as written: "dataset", "images", and per engine ("pytorch" first) "APd" /
        "APm" (AP, AP50, AP75 in percent), "minus_pytorch" (the same figures minus
        PyTorch's), "seconds_per_image" (median time of the model call, one image and
        its post-processing) and COCOEvaluator's full results.
    """
    if not cfg.DATASETS.TEST:
        sys.exit("error: --run-eval: cfg.DATASETS.TEST is empty; set DATASETS.TEST")
    dataset = cfg.DATASETS.TEST[0]
    try:
        loader = build_detection_test_loader(cfg, dataset)
    except (KeyError, FileNotFoundError, OSError) as e:
        sys.exit(
            f"error: --run-eval: cannot load DATASETS.TEST {dataset!r}: {e}. Put the dataset "
            f"in place or set DATASETS.TEST to one that is there."
        )
    tasks = ("bbox", "segm") if cfg.MODEL.MASK_ON else ("bbox",)
    report = {"dataset": dataset, "images": len(loader), "engines": {}}
    engines = {}
    if pytorch_model is not None:
        engines["pytorch"] = (None, "pytorch")
    engines.update(export_engines(export_dir))
    for engine, (folder, runtime) in engines.items():
        logger.info(f"evaluating {engine} on {dataset} ({len(loader)} images)")
        if runtime == "pytorch":
            model = ExportedDetector(lambda image: reference_outputs(pytorch_model, image))
        else:
            model = ExportedDetector(ExportedModel(folder, engine=runtime))
        timer = _CallTimer()
        evaluator = COCOEvaluator(dataset, tasks=tasks, distributed=False, output_dir=None)
        results = inference_on_dataset(
            model,
            loader,
            evaluator,
            callbacks={"before_inference": timer.start, "after_inference": timer.stop},
        )
        report["engines"][engine] = {
            "folder": os.path.relpath(folder, export_dir) if folder else None,
            "runtime": runtime,
            **summarize_ap(results, [dataset])[dataset],
            "seconds_per_image": statistics.median(timer.seconds),
            "coco_eval": results,
        }
    if "pytorch" in report["engines"]:
        reference = report["engines"]["pytorch"]
        for record in report["engines"].values():
            record["minus_pytorch"] = {
                label: {k: record[label][k] - reference[label][k] for k in record[label]}
                for label in ("APd", "APm")
                if label in record and label in reference
            }
    report = _finite(report)
    with open(os.path.join(export_dir, EVAL_FILE), "w") as f:
        json.dump(report, f, indent=2)
    for engine, record in report["engines"].items():
        figures = [
            f"{label} " + ", ".join(f"{k} {_percent(v)}" for k, v in record[label].items())
            for label in ("APd", "APm")
            if label in record
        ]
        milliseconds = record["seconds_per_image"] * 1000
        against = record.get("minus_pytorch", {}).get("APd", {}).get("AP50")
        versus = (
            f"; box AP50 {against:+.2f} against PyTorch"
            if engine != "pytorch" and against is not None
            else ""
        )
        logger.info(f"{engine}: {'; '.join(figures)} ({milliseconds:.0f} ms per image{versus})")
    logger.info(f"wrote {os.path.join(export_dir, EVAL_FILE)}")
    return report


def main(argv=None) -> int:
    args = parse_args_any_order(get_parser(), argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # Tracing Detectron2's models warns about every shape turned into a constant; the
    # check below is what tells whether the graph generalizes.
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", message=".*torch.meshgrid.*")
    if args.export_method == "scripting" and args.format != "torchscript":
        sys.exit("error: --export-method scripting exports TorchScript only (--format torchscript)")
    if args.int8 and args.format != "onnx":
        sys.exit("error: --int8 quantizes an ONNX export; add --format onnx")
    if args.calibration_images < 1:
        sys.exit(f"error: --calibration-images must be >= 1, got {args.calibration_images}")
    if args.run_eval and args.backbone_only:
        sys.exit("error: --run-eval evaluates a whole detector; drop --backbone-only")
    if not os.path.isfile(args.config_file):
        sys.exit(f"error: --config-file {args.config_file!r}: no such file")

    cfg = load_config(args.config_file, args.opts, device="cpu")
    loaded = load_model(cfg)
    model = prepare_for_export(copy.deepcopy(loaded), fuse=not args.no_fuse)
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
    if not args.no_check:
        # A second image of another size (and aspect) shows whether the exported graph
        # generalizes beyond the traced shape. Every engine of the format is checked.
        height, width = image.shape[-2:]
        other = image_tensor(
            synthetic_image(max(64, height * 3 // 4), max(64, width * 5 // 8), seed=1)
        )
        for engine in FORMAT_ENGINES[args.format]:
            exported = ExportedModel(args.output, engine=engine)
            if not check_export(model, exported, [image, other], args.backbone_only):
                logger.error(f"{path}: the model in {engine} does not match PyTorch (see above)")
                return 1
        logger.info(
            f"the exported model matches PyTorch in {', '.join(FORMAT_ENGINES[args.format])}"
        )
    if args.int8:
        write_int8(cfg, model, args, image)
    if args.run_eval:
        run_eval(cfg, args.output, pytorch_model=loaded)
    return 0


def cli(argv=None):
    sys.exit(main(argv))


if __name__ == "__main__":
    cli()

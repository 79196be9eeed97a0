#!/usr/bin/env python
"""
Draws a model's instance predictions (masks, boxes, class names, scores) on images,
a video or a webcam, with Detectron2's Visualizer and the dataset's metadata.

    python tools/demo.py --config-file configs/synth/atto_maskrcnn_synth.yaml \
        --input datasets/VOCsynth/VOC2012/JPEGImages/ --output output/demo \
        --opts MODEL.WEIGHTS output/atto_maskrcnn_synth/model_final.pth

Options may also follow the ``--opts`` overrides. Drawings never overwrite an input, nor
any existing file unless --overwrite is given; their names are those of ``output_paths``
(atto_detectron/visualization.py). Without --output,
windows are shown, which needs a display and an OpenCV built with GUI support.
"""

import argparse
import logging
import os
import re
import sys
import time

import cv2
import tqdm

from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers backbones and datasets)
from atto_detectron.checkpoint import CheckpointError
from atto_detectron.config import load_config
from atto_detectron.engine import parse_args_any_order
from atto_detectron.visualization import (
    VisualizationPredictor,
    expand_inputs,
    load_image,
    output_paths,
)


def setup_cfg(args):
    """
    The config of ``args`` with the confidence thresholds, frozen.

    Raises:
        ValueError: MODEL.WEIGHTS is empty and --allow-random-weights is not given.
        FileNotFoundError: the config file or the local MODEL.WEIGHTS file is missing.
    """
    cfg = load_config(args.config_file, args.opts)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    weights = cfg.MODEL.WEIGHTS
    if not weights and not args.allow_random_weights:
        raise ValueError(
            "MODEL.WEIGHTS is empty, so the drawings would be those of a randomly "
            "initialised model: pass trained weights with "
            "`--opts MODEL.WEIGHTS path/to/model_final.pth` (or --allow-random-weights)"
        )
    # Detectron2 resolves URLs (detectron2://, https://); a local file is checked here so
    # that a typo is an error before the model is built, not an assertion inside it.
    if weights and "://" not in weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"MODEL.WEIGHTS: {weights} does not exist")
    cfg.freeze()
    return cfg


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    parser.add_argument("--webcam", action="store_true", help="take inputs from the webcam")
    parser.add_argument("--video-input", help="path to a video file")
    parser.add_argument("--input", nargs="+", help="image files, globs ('dir/*.jpg') or folders")
    parser.add_argument(
        "--output",
        help="a file (one input) or a folder for the drawings; without it, windows are shown",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace drawings that exist already in --output (inputs are never replaced)",
    )
    parser.add_argument(
        "--confidence-threshold", type=float, default=0.5, help="minimum score to draw"
    )
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="draw a randomly initialised model when MODEL.WEIGHTS is empty (for testing)",
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE pairs to modify the config"
    )
    return parser


def check_display():
    """
    Raises ValueError when windows cannot be shown: before the model is built, rather
    than in ``cv2.imshow`` after inference.
    """
    if re.search(r"^\s*GUI:\s*NONE\s*$", cv2.getBuildInformation(), re.MULTILINE):
        reason = "this OpenCV is built without GUI support (e.g. opencv-python-headless)"
    elif sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        reason = "there is no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    else:
        return
    raise ValueError(f"cannot show windows: {reason}; use --output to write the drawings")


def check_images(paths):
    """
    Reads every input image once, before the model is built and anything is drawn.

    Raises:
        ValueError: naming the first unreadable image, and how many are.
    """
    bad = []
    for path in tqdm.tqdm(paths, desc="checking inputs", disable=len(paths) < 50):
        try:
            load_image(path)
        except ValueError as e:
            bad.append(str(e))
    if bad:
        more = f" ({len(bad) - 1} more unreadable inputs)" if len(bad) > 1 else ""
        raise ValueError(f"{bad[0]}{more}; nothing was drawn")


def run_images(demo, paths, outputs, logger):
    """Draws each image to its output path, or in a window where the output is None."""
    shown = outputs[0] is None
    for path, out in tqdm.tqdm(list(zip(paths, outputs)), disable=shown or len(paths) == 1):
        image = load_image(path)
        start = time.time()
        predictions, drawn = demo(image)
        logger.info(
            f"{path}: {len(predictions['instances'])} instances in {time.time() - start:.2f}s"
        )
        if out is not None:
            demo.save(drawn, out)
        else:
            cv2.imshow("atto-detectron", drawn[:, :, ::-1])
            if cv2.waitKey(0) == 27:
                break


def open_video(args):
    """
    Opens the video (or the webcam) and, with --output, the video writer.

    Returns:
        (capture, first frame as ``(H, W, 3)`` uint8 BGR, writer or None, name)

    Raises:
        FileNotFoundError: the video does not exist.
        ValueError: naming the file, when no frame can be decoded, the output would be
            the video itself, or the writer cannot be opened.
    """
    name = args.video_input or "webcam"
    if args.video_input and not os.path.isfile(args.video_input):
        raise FileNotFoundError(f"--video-input: {args.video_input} does not exist")
    capture = cv2.VideoCapture(args.video_input or 0)
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        raise ValueError(f"{name}: no frame could be decoded (not a video OpenCV reads)")
    writer = None
    if args.output:
        out = output_paths([name], args.output, ".mp4", args.overwrite)[0]
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        height, width = frame.shape[:2]
        fps = capture.get(cv2.CAP_PROP_FPS) or 25
        writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise ValueError(f"--output: OpenCV cannot write the video {out} (use a .mp4 name)")
    return capture, frame, writer, name


def run_video(demo, capture, frame, writer, name):
    """Draws ``frame`` and the frames after it into ``writer``, or in a window."""
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    try:
        with tqdm.tqdm(total=frames, disable=writer is None) as bar:
            ok = True
            while ok:
                _, drawn = demo.video_frame(frame)
                if writer is not None:
                    writer.write(drawn[:, :, ::-1])
                else:
                    cv2.imshow(name, drawn[:, :, ::-1])
                    if cv2.waitKey(1) == 27:
                        break
                bar.update()
                ok, frame = capture.read()
    finally:
        capture.release()
        if writer is not None:
            writer.release()


def main(argv=None):
    parser = get_parser()
    args = parse_args_any_order(parser, argv)
    setup_logger(name="fvcore")
    logger = setup_logger()
    if sum(bool(x) for x in (args.input, args.webcam, args.video_input)) != 1:
        sys.exit("error: give exactly one of --input, --webcam, --video-input")
    # Every check of the inputs and outputs comes before the model is built.
    try:
        if not args.output:
            check_display()
        cfg = setup_cfg(args)
        if args.input:
            paths = expand_inputs(args.input)
            check_images(paths)
            outputs = (
                output_paths(paths, args.output, overwrite=args.overwrite)
                if args.output
                else [None] * len(paths)
            )
            run_images(VisualizationPredictor(cfg), paths, outputs, logger)
        else:
            video = open_video(args)
            run_video(VisualizationPredictor(cfg), *video)
    except (OSError, ValueError, CheckpointError) as e:
        sys.exit(f"error: {e}")


def cli(argv=None):
    logging.basicConfig(level=logging.INFO)
    main(argv)


if __name__ == "__main__":
    cli()

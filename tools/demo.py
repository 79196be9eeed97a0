#!/usr/bin/env python
"""
Draws a model's instance predictions (masks, boxes, class names, scores) on images,
a video or a webcam, with Detectron2's Visualizer and the dataset's metadata.

    python tools/demo.py --config-file configs/synth/atto_maskrcnn_synth.yaml \
        --input datasets/VOCsynth/VOC2012/JPEGImages/ --output output/demo \
        --opts MODEL.WEIGHTS output/atto_maskrcnn_synth/model_final.pth
"""

import argparse
import logging
import os
import sys
import time

import cv2
import tqdm

from detectron2.config import get_cfg
from detectron2.utils.logger import setup_logger

import atto_detectron  # noqa: F401  (registers backbones and datasets)
from atto_detectron import add_attonet_config
from atto_detectron.visualization import VisualizationPredictor, expand_inputs, load_image


def setup_cfg(args):
    cfg = get_cfg()
    add_attonet_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.MODEL.RETINANET.SCORE_THRESH_TEST = args.confidence_threshold
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = args.confidence_threshold
    import torch

    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
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
        "--confidence-threshold", type=float, default=0.5, help="minimum score to draw"
    )
    parser.add_argument(
        "--opts", default=[], nargs=argparse.REMAINDER, help="KEY VALUE pairs to modify the config"
    )
    return parser


def _output_path(args, path, num_inputs):
    if os.path.isdir(args.output) or num_inputs > 1 or args.output.endswith(os.sep):
        return os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
    return args.output


def run_images(args, demo, logger):
    paths = expand_inputs(args.input)
    for path in tqdm.tqdm(paths, disable=not args.output or len(paths) == 1):
        image = load_image(path)
        start = time.time()
        predictions, drawn = demo(image)
        logger.info(
            f"{path}: {len(predictions['instances'])} instances in {time.time() - start:.2f}s"
        )
        if args.output:
            out = _output_path(args, path, len(paths))
            demo.save(drawn, out)
        else:
            cv2.imshow("atto-detectron", drawn[:, :, ::-1])
            if cv2.waitKey(0) == 27:
                break


def run_video(args, demo, capture, name):
    if not capture.isOpened():
        raise ValueError(f"{name}: OpenCV cannot open it")
    writer = None
    if args.output:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(
            capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        )
        out = (
            args.output
            if not os.path.isdir(args.output)
            else os.path.join(args.output, "video.mp4")
        )
        writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    with tqdm.tqdm(total=frames, disable=writer is None) as bar:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            _, drawn = demo(frame)
            if writer is not None:
                writer.write(drawn[:, :, ::-1])
            else:
                cv2.imshow(name, drawn[:, :, ::-1])
                if cv2.waitKey(1) == 27:
                    break
            bar.update()
    capture.release()
    if writer is not None:
        writer.release()


def main(argv=None):
    args = get_parser().parse_args(argv)
    setup_logger(name="fvcore")
    logger = setup_logger()
    if sum(bool(x) for x in (args.input, args.webcam, args.video_input)) != 1:
        sys.exit("error: give exactly one of --input, --webcam, --video-input")
    demo = VisualizationPredictor(setup_cfg(args))
    try:
        if args.input:
            run_images(args, demo, logger)
        elif args.webcam:
            run_video(args, demo, cv2.VideoCapture(0), "webcam")
        else:
            if not os.path.isfile(args.video_input):
                raise FileNotFoundError(f"--video-input: {args.video_input} does not exist")
            run_video(args, demo, cv2.VideoCapture(args.video_input), args.video_input)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()

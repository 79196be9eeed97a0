"""Predictions drawn with Detectron2's Visualizer (masks, boxes, class names, scores)."""

import glob
import os
from typing import List

import numpy as np
from PIL import Image, UnidentifiedImageError

from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import ColorMode, Visualizer

__all__ = ["VisualizationPredictor", "expand_inputs", "load_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_inputs(inputs: List[str]) -> List[str]:
    """
    Files, globs and folders (their images, sorted) -> image paths.

    Raises:
        FileNotFoundError: naming every input that matches nothing.
    """
    paths, missing = [], []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                os.path.join(item, f)
                for f in os.listdir(item)
                if f.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            found = [item]
        else:
            found = sorted(glob.glob(os.path.expanduser(item)))
        if not found:
            missing.append(item)
        paths.extend(found)
    if missing:
        raise FileNotFoundError(
            f"--input: no image found at {', '.join(repr(m) for m in missing)} "
            f"(give image files, globs such as 'dir/*.jpg', or folders)"
        )
    return paths


def load_image(path: str) -> np.ndarray:
    """
    Reads any image Pillow reads (grayscale, RGBA, palette, EXIF-rotated) as BGR uint8,
    ``(H, W, 3)``.

    Raises:
        ValueError: naming the file, when it is not a readable image.
    """
    try:
        return read_image(path, format="BGR")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({e}); check or re-export the file") from e


class VisualizationPredictor:
    """Runs a model on BGR images and draws its instances with the dataset's metadata."""

    def __init__(self, cfg, instance_mode=ColorMode.IMAGE):
        self.predictor = DefaultPredictor(cfg)
        names = cfg.DATASETS.TEST or cfg.DATASETS.TRAIN
        self.metadata = MetadataCatalog.get(names[0] if len(names) else "__unused")
        self.instance_mode = instance_mode

    def __call__(self, image_bgr: np.ndarray):
        """
        Args:
            image_bgr: ``(H, W, 3)`` uint8, BGR.

        Returns:
            (predictions, drawn): the model's output dict and the drawing as an
            ``(H, W, 3)`` uint8 RGB array.
        """
        predictions = self.predictor(image_bgr)
        instances = predictions["instances"].to("cpu")
        visualizer = Visualizer(
            image_bgr[:, :, ::-1], self.metadata, instance_mode=self.instance_mode
        )
        drawn = visualizer.draw_instance_predictions(predictions=instances)
        return predictions, drawn.get_image()

    @staticmethod
    def save(drawn_rgb: np.ndarray, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        Image.fromarray(drawn_rgb).save(path)

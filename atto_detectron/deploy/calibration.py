"""
Calibration images of the INT8 quantization (:mod:`.quantize`): images of the config's
training set, resized as at test time.
"""

from typing import List

import numpy as np
import torch

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, detection_utils
from detectron2.data import transforms as T

from .inputs import image_tensor

__all__ = ["DEFAULT_CALIBRATION_IMAGES", "calibration_images", "resize_for_test"]

DEFAULT_CALIBRATION_IMAGES = 100


def resize_for_test(cfg: CfgNode, image: np.ndarray) -> torch.Tensor:
    """
    ``(H, W, 3)`` image -> ``(3, H', W')`` float tensor, resized as Detectron2's
    DefaultPredictor and test loader do (``ResizeShortestEdge(MIN_SIZE_TEST,
    MAX_SIZE_TEST)``).
    """
    short = cfg.INPUT.MIN_SIZE_TEST
    resize = T.ResizeShortestEdge([short, short], cfg.INPUT.MAX_SIZE_TEST)
    return image_tensor(resize.get_transform(image).apply_image(image))


def calibration_images(
    cfg: CfgNode, num_images: int = DEFAULT_CALIBRATION_IMAGES
) -> List[torch.Tensor]:
    """
    ``num_images`` training images of the config (``cfg.DATASETS.TRAIN``), read in
    ``cfg.INPUT.FORMAT`` and resized as at test time (:func:`resize_for_test`): the
    records of Detectron2's DatasetCatalog, in its order, evenly spaced over the whole
    set (the same images every time; all of them when there are fewer).

    Raises:
        ValueError: no dataset named, a dataset that is not registered or whose files are
            missing, or no images in it.
    """
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise ValueError(
            "calibration images: cfg.DATASETS.TRAIN is empty; set it (e.g. DATASETS.TRAIN "
            "\"('voc_synth_train',)\") to the dataset the model was trained on"
        )
    if num_images < 1:
        raise ValueError(f"calibration images: need at least 1, got {num_images}")
    records = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise ValueError(
                f"calibration images: DATASETS.TRAIN {name!r} is not a registered dataset; "
                f"register it (importing atto_detectron registers the VOC ones) or set "
                f"DATASETS.TRAIN to one that is"
            )
        try:
            records += DatasetCatalog.get(name)
        except OSError as e:  # the loader's message says how to put the files in place
            raise ValueError(f"calibration images: DATASETS.TRAIN {name!r}: {e}") from e
    if not records:
        raise ValueError(f"calibration images: DATASETS.TRAIN {names} holds no images")
    count = min(num_images, len(records))
    picks = [records[i * len(records) // count] for i in range(count)]
    return [
        resize_for_test(cfg, detection_utils.read_image(r["file_name"], format=cfg.INPUT.FORMAT))
        for r in picks
    ]

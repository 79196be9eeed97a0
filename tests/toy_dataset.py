"""A tiny instance-segmentation dataset for trainer tests: coloured boxes and discs."""

import os

import cv2
import numpy as np
import pycocotools.mask as mask_util

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

__all__ = ["register_toy_dataset"]


def _make(root, num_images, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    records = []
    for i in range(num_images):
        image = (rng.random((192, 256, 3)) * 80).astype(np.uint8)
        annotations = []
        for k in range(int(rng.integers(1, 3))):
            mask = np.zeros(image.shape[:2], np.uint8)
            x, y = int(rng.integers(10, 150)), int(rng.integers(10, 90))
            w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
            if k == 0:
                cv2.rectangle(mask, (x, y), (x + w, y + h), 1, -1)
                category, colour = 2, (40, 40, 220)
            else:
                cv2.ellipse(mask, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, 1, -1)
                category, colour = 11, (40, 220, 40)
            image[mask > 0] = colour
            rle = mask_util.encode(np.asfortranarray(mask))
            rle["counts"] = rle["counts"].decode("ascii")
            annotations.append(
                {
                    "bbox": mask_util.toBbox(rle).tolist(),
                    "bbox_mode": BoxMode.XYWH_ABS,
                    "category_id": category,
                    "segmentation": rle,
                    "iscrowd": 0,
                }
            )
        file_name = os.path.join(root, f"{i:04d}.jpg")
        cv2.imwrite(file_name, image)
        records.append(
            {
                "file_name": file_name,
                "image_id": i,
                "height": image.shape[0],
                "width": image.shape[1],
                "annotations": annotations,
            }
        )
    return records


def register_toy_dataset(name, root, num_images=8, seed=0):
    """Registers ``name`` (20 VOC-sized classes), writing its images under ``root``."""
    if name in DatasetCatalog.list():
        return name
    records = _make(root, num_images, seed)
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(thing_classes=[f"class{i}" for i in range(20)])
    return name

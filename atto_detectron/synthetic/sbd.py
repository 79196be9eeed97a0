"""
A companion of the generated VOC data in SBD's layout (the ``.mat`` files of
``benchmark_RELEASE/dataset``), so that ``train_aug`` can be composed as on the real data.
"""

import os
from typing import Sequence

import cv2
import numpy as np

from ..data.voc_meta import VOC_CLASS_NAMES
from .voc_scene import SPLITS, SyntheticSample, render_sample, sample_name
from .voc_writer import _jpeg_quality, _write_jpeg, _xml

__all__ = ["write_sbd_sample", "write_synthetic_sbd"]


def _sbd_boundaries(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """(len(values), 1) cell of sparse (H, W) masks: the outline pixels of each value."""
    from scipy.sparse import csc_matrix

    cell = np.empty((len(values), 1), dtype=object)
    for i, value in enumerate(values):
        mask = labels == value
        inside = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        cell[i, 0] = csc_matrix(mask & ~inside)
    return cell


def write_sbd_sample(sbd_root: str, sample: SyntheticSample):
    """
    Writes a sample's labels as SBD stores them, compressed MATLAB files of 1x1 structs:
    ``inst/<name>.mat`` with GTinst (Segmentation (H, W) uint8 0..N, Boundaries (N, 1)
    cell of sparse masks, Categories (N, 1) uint8 classes 1..20) and ``cls/<name>.mat``
    with GTcls (Segmentation (H, W) uint8 0..20, Boundaries (20, 1), CategoriesPresent).
    SBD has no void band: object k covers all of its visible pixels, and the objects VOC
    leaves unlabelled are background.
    """
    from scipy.io import savemat

    instances = np.zeros(sample.instances.shape, np.uint8)
    classes = np.zeros(sample.instances.shape, np.uint8)
    categories = [VOC_CLASS_NAMES.index(obj.class_name) + 1 for obj in sample.objects]
    for k, (obj, category) in enumerate(zip(sample.objects, categories), start=1):
        instances[obj.visible] = k
        classes[obj.visible] = category
    all_classes = range(1, len(VOC_CLASS_NAMES) + 1)
    structs = {
        "inst": {
            "GTinst": {
                "Segmentation": instances,
                "Boundaries": _sbd_boundaries(instances, range(1, len(categories) + 1)),
                "Categories": np.array(categories, np.uint8).reshape(-1, 1),
            }
        },
        "cls": {
            "GTcls": {
                "Segmentation": classes,
                "Boundaries": _sbd_boundaries(classes, all_classes),
                "CategoriesPresent": np.array(sorted(set(categories)), np.uint8).reshape(-1, 1),
            }
        },
    }
    for folder, struct in structs.items():
        os.makedirs(os.path.join(sbd_root, folder), exist_ok=True)
        savemat(os.path.join(sbd_root, folder, f"{sample.name}.mat"), struct, do_compression=True)


def write_synthetic_sbd(
    out_dir: str,
    voc_root: str,
    num_train: int,
    num_val: int,
    seed: int = 0,
    long_side: int = 256,
) -> str:
    """
    Writes an SBD companion of a dataset of :func:`write_synthetic_voc`:
    ``<out_dir>/SBD/{inst,cls}/<name>.mat`` (see :func:`write_sbd_sample`) and
    ``train.txt`` / ``val.txt``. As in the real data, SBD covers images of the VOC splits
    too, and the images beyond them have a JPEG and XML in VOC2012 but no label PNGs.

    Args:
        out_dir: the folder that gets ``SBD/`` (the counterpart of
            ``benchmark_RELEASE/dataset``).
        voc_root: the generated ``VOC2012`` folder; gets the JPEGs and XMLs it lacks.
        num_train, num_val: SBD lists the first ``num_train`` train and ``num_val`` val
            images of the generator; more than the VOC splits have adds SBD-only images.
        seed, long_side: those the VOC data was written with.

    Returns:
        str: the ``SBD`` folder (what ``$DETECTRON2_DATASETS/SBD`` holds).
    """
    sbd_root = os.path.join(out_dir, "SBD")
    counts = {"train": num_train, "val": num_val}
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(voc_root, sub), exist_ok=True)
    for split in SPLITS:
        for index in range(counts[split]):
            sample = render_sample(seed, split, index, long_side)
            write_sbd_sample(sbd_root, sample)
            if not os.path.isfile(os.path.join(voc_root, "JPEGImages", f"{sample.name}.jpg")):
                _write_jpeg(voc_root, sample, _jpeg_quality(seed, index))
                _xml(sample).write(os.path.join(voc_root, "Annotations", f"{sample.name}.xml"))
    for split in SPLITS:
        with open(os.path.join(sbd_root, f"{split}.txt"), "w") as f:
            f.write("".join(f"{sample_name(split, i)}\n" for i in range(counts[split])))
    return sbd_root

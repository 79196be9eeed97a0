"""
A generated stand-in for Pascal VOC 2012 instance segmentation, written in the VOCdevkit
layout so that it goes through the very loader of the real data.

Each image has a textured, unevenly lit background with unlabelled clutter, and 0 to 4
objects of 6 VOC classes, each drawn as a class-specific silhouette made of parts
(wings, sails, wheels, leaves, a screen, ...) in random sizes, poses and aspect ratios,
mostly in its class's typical colours. Objects overlap and occlude one another, run off
the image border, and some are tiny; the labels carry VOC's void band (255) along every
outline. Every image is a pure function of (seed, split, index).

:func:`write_synthetic_sbd` writes a companion in SBD's layout (the ``.mat`` files of
``benchmark_RELEASE/dataset``), so that ``train_aug`` can be composed as on the real data.

This module writes whole datasets and records the arguments they were generated with
(:data:`GENERATOR_FILE`); the parts live beside it: the class silhouettes in
:mod:`.voc_shapes`, textures and light in :mod:`.voc_paint`, one image and its labels in
:mod:`.voc_scene`, one image's VOC files in :mod:`.voc_writer`, and SBD in :mod:`.sbd`.
"""

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Optional

from ..data.builtin import GENERATOR_FILE
from .sbd import write_sbd_sample, write_synthetic_sbd
from .voc_scene import SPLITS, SyntheticObject, SyntheticSample, render_sample, sample_name
from .voc_shapes import SYNTHETIC_CLASSES
from .voc_writer import _jpeg_quality, write_sample

__all__ = [
    "GENERATOR_FILE",
    "ensure_synthetic_voc",
    "SYNTHETIC_CLASSES",
    "SyntheticObject",
    "SyntheticSample",
    "render_sample",
    "sample_name",
    "write_sample",
    "write_sbd_sample",
    "write_synthetic_sbd",
    "write_synthetic_voc",
]

logger = logging.getLogger(__name__)


def _render_and_write(job) -> int:
    voc_root, seed, split, index, long_side = job
    sample = render_sample(seed, split, index, long_side)
    write_sample(voc_root, sample, jpeg_quality=_jpeg_quality(seed, index))
    return len(sample.objects)


def write_synthetic_voc(
    out_dir: str,
    num_train: int = 1000,
    num_val: int = 200,
    seed: int = 0,
    long_side: int = 256,
    workers: Optional[int] = None,
    progress: bool = False,
    num_holdout: int = 0,
) -> str:
    """
    Writes a VOC-layout dataset: ``<out_dir>/VOC2012/{JPEGImages, SegmentationObject,
    SegmentationClass, Annotations, ImageSets/Segmentation/{train,val,trainval}.txt}``,
    and the arguments it was written with in ``VOC2012/generator.json``.

    Args:
        out_dir: the folder that gets ``VOC2012/`` (the counterpart of ``VOCdevkit``).
        num_train, num_val: images in each split.
        seed: the dataset's seed (the same seed writes the same files).
        long_side: the longer image side in pixels.
        workers: processes drawing in parallel (default: one per CPU; 0 draws in this one).
        progress: show a tqdm progress bar.
        num_holdout: images of a ``holdout`` split (``holdout.txt``): further images of
            the training stream, after the first ``num_train``, to tune a recipe on
            without touching ``val``.

    Returns:
        str: the ``VOC2012`` folder.
    """
    voc_root = os.path.join(out_dir, "VOC2012")
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "Annotations"):
        os.makedirs(os.path.join(voc_root, sub), exist_ok=True)
    os.makedirs(os.path.join(voc_root, "ImageSets", "Segmentation"), exist_ok=True)
    counts = {"train": num_train + num_holdout, "val": num_val}
    jobs = [(voc_root, seed, split, i, long_side) for split in SPLITS for i in range(counts[split])]

    workers = os.cpu_count() if workers is None else workers
    if progress:
        from tqdm import tqdm
    else:
        tqdm = None
    if workers and len(jobs) > 16:
        with ProcessPoolExecutor(workers) as pool:
            results = pool.map(_render_and_write, jobs, chunksize=16)
            results = list(tqdm(results, total=len(jobs), desc="images") if tqdm else results)
    else:
        results = [_render_and_write(job) for job in (tqdm(jobs, desc="images") if tqdm else jobs)]
    del results

    # Split lists last, so that an interrupted run leaves no list naming missing files.
    lists = {
        "train": [sample_name("train", i) for i in range(num_train)],
        "val": [sample_name("val", i) for i in range(num_val)],
    }
    lists["trainval"] = lists["train"] + lists["val"]
    if num_holdout:
        lists["holdout"] = [sample_name("train", num_train + i) for i in range(num_holdout)]
    generator = {
        "generator": "atto_detectron.synthetic.write_synthetic_voc",
        "seed": seed,
        "num_train": num_train,
        "num_holdout": num_holdout,
        "num_val": num_val,
        "long_side": long_side,
        "classes": list(SYNTHETIC_CLASSES),
    }
    with open(os.path.join(voc_root, GENERATOR_FILE), "w") as f:
        json.dump(generator, f, indent=2)
    for split, names in lists.items():
        with open(os.path.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"), "w") as f:
            f.write("".join(f"{name}\n" for name in names))
    return voc_root


def ensure_synthetic_voc(out_dir: str, progress: bool = False, **arguments) -> str:
    """
    The ``VOC2012`` folder of ``out_dir``, written by :func:`write_synthetic_voc` with
    ``arguments`` when it holds no complete dataset yet.

    Raises:
        ValueError: the folder holds data generated with other arguments (named, with
            both sets of arguments); it is never overwritten.
    """
    voc_root = os.path.join(out_dir, "VOC2012")
    generator = os.path.join(voc_root, GENERATOR_FILE)
    complete = os.path.isfile(os.path.join(voc_root, "ImageSets", "Segmentation", "val.txt"))
    if complete and not os.path.isfile(generator):
        logger.warning(
            f"{voc_root} records no generator arguments ({GENERATOR_FILE}); using it as it is."
        )
        return voc_root
    if complete:
        with open(generator) as f:
            found = json.load(f)
        wanted = dict(
            {"seed": 0, "num_train": 1000, "num_holdout": 0, "num_val": 200, "long_side": 256},
            **arguments,
        )
        recorded = ("seed", "num_train", "num_holdout", "num_val", "long_side")
        differ = {k: (found.get(k), wanted[k]) for k in recorded if found.get(k) != wanted[k]}
        if differ:
            raise ValueError(
                f"{voc_root} holds generated data with other arguments than needed "
                f"(found, needed: {differ}); move it away, and it is generated anew."
            )
        return voc_root
    return write_synthetic_voc(out_dir, progress=progress, **arguments)

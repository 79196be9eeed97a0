"""
One generated VOC image with its labels (:func:`render_sample`): objects of
:mod:`.voc_shapes` painted as :mod:`.voc_paint` paints them, and the instance and class
maps with VOC's void band along every outline.
"""

import math
from dataclasses import dataclass
from typing import List, Tuple

import cv2
import numpy as np

from ..data.voc_meta import VOC_CLASS_NAMES, VOC_VOID
from .voc_paint import _background, _clutter, _finish, _paint_object
from .voc_shapes import _SHAPES, SYNTHETIC_CLASSES, _Parts, _Pose

__all__ = [
    "SPLITS",
    "SyntheticObject",
    "SyntheticSample",
    "render_sample",
    "sample_name",
]

SPLITS = ("train", "val")  # each draws from its own random stream

# An object whose visible interior (outside the void band) is smaller than this is left
# unlabelled: its pixels become void, as VOC does with objects too small to outline.
MIN_INSTANCE_PIXELS = 16
# Objects this small, or this hidden, are flagged difficult in the XML.
DIFFICULT_PIXELS = 100
DIFFICULT_VISIBLE_FRACTION = 0.25


@dataclass
class SyntheticObject:
    """One labelled object of a :class:`SyntheticSample`."""

    class_name: str
    mask: np.ndarray  # (H, W) bool: its pixels in SegmentationObject (void band excluded)
    visible: np.ndarray  # (H, W) bool: everything of it that is not hidden, band included
    silhouette: np.ndarray  # (H, W) bool: all of it inside the image, hidden parts included
    truncated: bool
    difficult: bool


@dataclass
class SyntheticSample:
    """One generated image with its labels."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    instances: np.ndarray  # (H, W) uint8: 0 background, 1..N objects, 255 void
    classes: np.ndarray  # (H, W) uint8: 0 background, 1..20 VOC classes, 255 void
    objects: List[SyntheticObject]  # object i has the value i + 1 in ``instances``


def sample_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}"


def _image_shape(rng, long_side: int) -> Tuple[int, int]:
    short = int(round(long_side / rng.choice([4 / 3, 3 / 2, 5 / 4, 1.0])))
    return (long_side, short) if rng.random() < 0.25 else (short, long_side)


def _void_band(owner: np.ndarray) -> np.ndarray:
    """Pixels next to a change of owner (one pixel on each side of every outline)."""
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(owner, kernel) != cv2.erode(owner, kernel)


def render_sample(seed: int, split: str, index: int, long_side: int = 256) -> SyntheticSample:
    """
    Draws image ``index`` of ``split``: the same (seed, split, index) always gives the
    same sample.

    Args:
        seed: the dataset's seed.
        split: "train" or "val" (they draw from independent random streams).
        index: the image's position in its split.
        long_side: the longer image side in pixels; the other is 1 to 4/3 times shorter.
    """
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    shape = _image_shape(rng, long_side)
    h, w = shape
    canvas = _background(rng, shape)

    num_objects = 0 if rng.random() < 0.05 else int(rng.integers(1, 5))
    num_clutter = int(rng.integers(0, 3))
    events = ["object"] * num_objects + ["clutter"] * num_clutter
    rng.shuffle(events)

    owner = np.zeros(shape, np.uint8)  # who is seen at each pixel: 0 nobody, k object k
    drawn = []  # (class name, full mask) of each object, in drawing order
    for event in events:
        if event == "clutter":
            mask = _clutter(rng, shape).astype(bool)
            if mask.any():
                _paint_object(rng, canvas, [(mask, "clutter")], mask)
                owner[mask] = 0
            continue
        class_name = SYNTHETIC_CLASSES[int(rng.integers(len(SYNTHETIC_CLASSES)))]
        draw, (aspect_low, aspect_high), max_angle = _SHAPES[class_name]
        if rng.random() < 0.06:
            extent = rng.uniform(8, 18)  # tiny
        else:
            extent = math.exp(rng.uniform(math.log(32), math.log(0.9 * min(h, w))))
        aspect = rng.uniform(aspect_low, aspect_high)
        scale = (extent / 2 * min(1.0, aspect), extent / 2 * min(1.0, 1 / aspect))
        center = rng.uniform([-0.05 * w, -0.05 * h], [1.05 * w, 1.05 * h])
        pose = _Pose(center, scale, rng.uniform(-max_angle, max_angle), rng.random() < 0.5)
        parts = _Parts(shape, pose)
        draw(parts, rng)
        full = parts.union
        if not full.any():
            continue
        _paint_object(rng, canvas, parts.parts, full)
        full = full.astype(bool)
        drawn.append((class_name, full))
        owner[full] = len(drawn)

    band = _void_band(owner)
    instances = np.zeros(shape, np.uint8)
    classes = np.zeros(shape, np.uint8)
    objects = []
    for k, (class_name, full) in enumerate(drawn, start=1):
        visible = owner == k
        interior = visible & ~band
        if interior.sum() < MIN_INSTANCE_PIXELS:
            instances[visible] = classes[visible] = VOC_VOID
            continue
        objects.append(
            SyntheticObject(
                class_name=class_name,
                mask=interior,
                visible=visible,
                silhouette=full,
                truncated=bool(
                    visible[0].any()
                    or visible[-1].any()
                    or visible[:, 0].any()
                    or visible[:, -1].any()
                ),
                difficult=bool(
                    interior.sum() < DIFFICULT_PIXELS
                    or visible.sum() < DIFFICULT_VISIBLE_FRACTION * full.sum()
                ),
            )
        )
        instances[interior] = len(objects)
        classes[interior] = VOC_CLASS_NAMES.index(class_name) + 1
    instances[band] = classes[band] = VOC_VOID
    return SyntheticSample(
        name=sample_name(split, index),
        image=_finish(rng, canvas),
        instances=instances,
        classes=classes,
        objects=objects,
    )

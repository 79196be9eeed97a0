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
"""

import json
import logging
import math
import os
import xml.etree.ElementTree as ET
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image

from ..data.voc_meta import VOC_CLASS_NAMES, VOC_VOID, voc_palette

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

SYNTHETIC_CLASSES = (
    "aeroplane",
    "bird",
    "boat",
    "car",
    "pottedplant",
    "tvmonitor",
)
SPLITS = ("train", "val")

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------
# Shapes: each class is a list of parts, each part a mask and a paint role.


class _Pose:
    """Maps a shape's own coordinates (about [-1, 1]^2, y down) into the image."""

    def __init__(self, center, scale_xy, angle, flip):
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = np.asarray(scale_xy, dtype=np.float64) * [(-1.0 if flip else 1.0), 1.0]
        c, s = math.cos(angle), math.sin(angle)
        self.rotation = np.array([[c, -s], [s, c]])

    def points(self, pts) -> np.ndarray:
        return (np.asarray(pts, dtype=np.float64) * self.scale) @ self.rotation.T + self.center

    def length(self, value: float) -> float:
        return float(value * np.sqrt(np.abs(self.scale[0] * self.scale[1])))


_SHIFT = 4  # sub-pixel bits for OpenCV drawing
# Thinner strokes would vanish into the void band (one pixel on each side of an outline).
_MIN_STROKE = 3


def _fixed(pts) -> np.ndarray:
    return np.round(np.asarray(pts) * (1 << _SHIFT)).astype(np.int32)


class _Parts:
    """Draws parts into (H, W) uint8 masks: polygons, discs, rings and thick lines."""

    def __init__(self, shape, pose: _Pose):
        self.pose = pose
        self.parts: List[Tuple[np.ndarray, str]] = []  # (mask, paint role)
        self.union = np.zeros(shape, dtype=np.uint8)  # 1 where any part is

    def _draw(self, role, draw):
        mask = np.zeros_like(self.union)
        draw(mask)
        self.parts.append((mask, role))
        self.union |= mask

    def polygon(self, pts, role):
        pts = [_fixed(self.pose.points(pts))]
        self._draw(role, lambda m: cv2.fillPoly(m, pts, 1, cv2.LINE_8, _SHIFT))

    def rect(self, x0, y0, x1, y1, role):
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], role)

    def disc(self, center, radius, role):
        c = tuple(_fixed(self.pose.points([center])[0]))
        r = int(max(1.0, self.pose.length(radius)) * (1 << _SHIFT))
        self._draw(role, lambda m: cv2.circle(m, c, r, 1, -1, cv2.LINE_8, _SHIFT))

    def ring(self, center, radius, width, role):
        c = tuple(_fixed(self.pose.points([center])[0]))
        r = int(self.pose.length(radius) * (1 << _SHIFT))
        w = max(_MIN_STROKE, round(self.pose.length(width)))
        self._draw(role, lambda m: cv2.circle(m, c, r, 1, w, cv2.LINE_8, _SHIFT))

    def ellipse(self, center, axes, angle, role):
        # An ellipse as a polygon, so that it follows the pose's anisotropic scale.
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        c, s = math.cos(angle), math.sin(angle)
        local = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
        self.polygon(local @ np.array([[c, -s], [s, c]]).T + center, role)

    def line(self, pts, width, role):
        pts = [_fixed(self.pose.points(pts))]
        w = max(_MIN_STROKE, round(self.pose.length(width)))
        self._draw(role, lambda m: cv2.polylines(m, pts, False, 1, w, cv2.LINE_8, _SHIFT))


def _aeroplane(p: _Parts, rng):
    sweep = rng.uniform(0.1, 0.4)
    chord = rng.uniform(0.35, 0.55)
    p.polygon([(-1, -0.14), (0.65, -0.15), (1, 0), (0.65, 0.15), (-1, 0.14)], "fuselage")
    for side in (-1, 1):
        p.polygon(
            [
                (0.3, 0.1 * side),
                (0.3 - sweep, 0.95 * side),
                (0.3 - sweep - chord, 0.95 * side),
                (0.3 - chord - 0.1, 0.1 * side),
            ],
            "fuselage",
        )
        p.polygon(
            [(-0.68, 0.1 * side), (-0.88, 0.45 * side), (-1.05, 0.45 * side), (-1.0, 0.1 * side)],
            "fuselage",
        )


def _bird(p: _Parts, rng):
    lift = rng.uniform(0.0, 0.45)
    p.ellipse((0, 0.25), (0.5, 0.2), 0.1, "feathers")
    p.disc((0.5, 0.08), 0.17, "feathers")
    p.polygon([(0.63, 0.03), (0.95, 0.1), (0.63, 0.16)], "beak")
    p.polygon([(-0.42, 0.2), (-1.0, 0.05), (-0.95, 0.5)], "feathers")
    p.polygon([(-0.35, 0.15), (-0.75, -0.5 - lift), (-0.4, -0.6 - lift), (0.15, 0.1)], "feathers")
    p.polygon([(0.0, 0.12), (0.15, -0.45 - lift), (0.45, -0.35 - lift), (0.3, 0.15)], "feathers")


def _boat(p: _Parts, rng):
    p.polygon([(-1, 0.3), (1, 0.3), (0.75, 0.75), (-0.8, 0.75)], "hull")
    top = rng.uniform(-1.0, -0.7)
    p.polygon([(0.06, top), (0.06, 0.3), (rng.uniform(0.55, 0.9), 0.3)], "sail")
    p.polygon([(-0.06, top + 0.2), (-0.06, 0.3), (-rng.uniform(0.45, 0.8), 0.3)], "sail")
    p.line([(0, top - 0.05), (0, 0.32)], 0.07, "hull")


def _car(p: _Parts, rng):
    p.polygon([(-1, 0.0), (0.95, -0.02), (1.0, 0.2), (0.95, 0.42), (-1, 0.42)], "body")
    p.polygon([(-0.55, 0.0), (-0.35, -0.42), (0.3, -0.42), (0.6, 0.0)], "body")
    p.polygon([(-0.45, -0.04), (-0.3, -0.34), (0.25, -0.34), (0.48, -0.04)], "window")
    for x in (-0.58, 0.58):
        p.disc((x, 0.44), 0.22, "wheel")


def _pottedplant(p: _Parts, rng):
    for angle in rng.uniform(-2.9, -0.25, size=int(rng.integers(4, 7))):
        length = rng.uniform(0.6, 0.95)
        center = (0.5 * length * math.cos(angle), 0.45 + 0.5 * length * math.sin(angle))
        p.ellipse(center, (length / 2, rng.uniform(0.1, 0.16)), angle, "leaf")
    p.polygon([(-0.3, 0.45), (0.3, 0.45), (0.22, 1.0), (-0.22, 1.0)], "pot")


def _tvmonitor(p: _Parts, rng):
    p.rect(-1, -0.75, 1, 0.45, "casing")
    p.rect(-0.86, -0.63, 0.86, 0.33, "screen")
    p.rect(-0.1, 0.45, 0.1, 0.66, "casing")
    p.rect(-0.42, 0.64, 0.42, 0.76, "casing")


# class: (drawer, aspect range (width / height of the scale), max rotation in radians)
_SHAPES: Dict[str, Tuple[Callable, Tuple[float, float], float]] = {
    "aeroplane": (_aeroplane, (0.7, 1.3), 0.8),
    "bird": (_bird, (0.8, 1.25), 0.4),
    "boat": (_boat, (0.8, 1.2), 0.15),
    "car": (_car, (0.9, 1.3), 0.12),
    "pottedplant": (_pottedplant, (0.7, 1.1), 0.15),
    "tvmonitor": (_tvmonitor, (0.9, 1.3), 0.1),
}
assert set(_SHAPES) == set(SYNTHETIC_CLASSES) <= set(VOC_CLASS_NAMES)


# ---------------------------------------------------------------------------------------
# Paint: textures, colours, background, light.


def _smooth_field(rng, shape, cells, channels=1) -> np.ndarray:
    """Low-frequency noise in [0, 1], (H, W, channels)."""
    h, w = shape
    grid = rng.random((cells, cells, channels)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field.reshape(h, w, channels), 0, 1)


def _random_color(rng, low=20, high=235) -> np.ndarray:
    return rng.uniform(low, high, size=3).astype(np.float32)


def _texture(rng, shape, base: np.ndarray, other: Optional[np.ndarray] = None) -> np.ndarray:
    """
    (H, W, 3) float texture of ``base`` and ``other`` (default: a random colour): plain,
    stripes, checks, dots, noise or a gradient.
    """
    h, w = shape
    kind = rng.choice(["plain", "stripes", "checks", "dots", "noise", "gradient"])
    if kind == "plain":
        return np.broadcast_to(base, (h, w, 3))
    other = _random_color(rng) if other is None else other
    period = rng.uniform(4, 14)
    angle = rng.uniform(0, np.pi)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    u = xx * math.cos(angle) + yy * math.sin(angle)  # (H, W) by broadcasting
    if kind == "stripes":
        t = np.sin(2 * np.pi / period * u) > 0
    elif kind == "checks":
        v = yy * math.cos(angle) - xx * math.sin(angle)
        t = (np.floor(u / period) + np.floor(v / period)) % 2
    elif kind == "dots":
        v = yy * math.cos(angle) - xx * math.sin(angle)
        t = ((u % period) - period / 2) ** 2 + ((v % period) - period / 2) ** 2 < (
            period / 3.5
        ) ** 2
    elif kind == "noise":
        t = _smooth_field(rng, shape, int(rng.integers(6, 20)))[..., 0]
    else:
        t = (u - u.min()) / max(1.0, float(u.max() - u.min()))
    weight = rng.uniform(0.25, 0.7) * t.astype(np.float32)[..., None]
    return base + (other - base) * weight


# Parts with a typical colour range (RGB low, high), as real objects have: grey-white
# aeroplanes, dark wheels, green leaves, ... A part takes it with probability
# TYPICAL_COLOR_PROBABILITY and a random colour and texture otherwise; car bodies,
# boat hulls are always random.
_ROLE_COLORS = {
    "fuselage": ((170, 170, 175), (245, 245, 250)),
    "pot": ((150, 70, 40), (205, 115, 75)),
    "feathers": ((70, 45, 20), (150, 110, 70)),
    "beak": ((200, 120, 0), (255, 200, 60)),
    "sail": ((195, 195, 185), (250, 250, 245)),
    "wheel": ((15, 15, 15), (70, 70, 70)),
    "window": ((150, 170, 180), (220, 235, 245)),
    "leaf": ((20, 90, 10), (110, 200, 90)),
    "casing": ((10, 10, 10), (60, 60, 60)),
    "screen": ((10, 10, 30), (80, 90, 120)),
}
TYPICAL_COLOR_PROBABILITY = 0.9


def _paint_object(rng, canvas: np.ndarray, parts: Sequence[Tuple[np.ndarray, str]], full):
    """Paints the parts (masks, roles) of one object, whose union is ``full``, on ``canvas``."""
    x0, y0, box_w, box_h = cv2.boundingRect(full.view(np.uint8))
    y1, x1 = y0 + box_h, x0 + box_w
    box_shape = (box_h, box_w)
    # Light from one side across the whole object.
    direction = rng.uniform(0, 2 * np.pi)
    ramp = np.arange(box_shape[1], dtype=np.float32)[None, :] * math.cos(direction) + np.arange(
        box_shape[0], dtype=np.float32
    )[:, None] * math.sin(direction)
    ramp = (ramp - ramp.mean()) / max(1.0, float(np.ptp(ramp)))
    shade = (1 + rng.uniform(0.1, 0.5) * ramp)[..., None]
    paints = {}
    for mask, role in parts:
        if role not in paints:
            if role in _ROLE_COLORS and rng.random() < TYPICAL_COLOR_PROBABILITY:
                low, high = _ROLE_COLORS[role]
                color = rng.uniform(low, high).astype(np.float32)
                paint = _texture(rng, box_shape, color, color * rng.uniform(0.55, 0.85))
            else:
                paint = _texture(rng, box_shape, _random_color(rng))
            paints[role] = paint * shade
        region = mask[y0:y1, x0:x1].astype(bool)
        canvas[y0:y1, x0:x1][region] = paints[role][region]


def _background(rng, shape) -> np.ndarray:
    # Drawn at half resolution (it is smooth anyway) and enlarged.
    full_h, full_w = shape
    h, w = shape = ((full_h + 1) // 2, (full_w + 1) // 2)
    colors = _smooth_field(rng, shape, int(rng.integers(2, 5)), channels=3) * 200 + 25
    background = _texture(rng, shape, colors.mean(axis=(0, 1)))
    mix = rng.uniform(0.3, 0.8)
    background = mix * colors + (1 - mix) * background
    if rng.random() < 0.5:  # a horizon: ground and sky of different stuff
        horizon = int(rng.uniform(0.3, 0.7) * h)
        background[horizon:] = 0.5 * background[horizon:] + 0.5 * _texture(
            rng, (h - horizon, w), _random_color(rng)
        )
    return cv2.resize(
        background.astype(np.float32), (full_w, full_h), interpolation=cv2.INTER_LINEAR
    )


def _clutter(rng, shape) -> np.ndarray:
    """An unlabelled blob or scribble: (H, W) uint8 mask."""
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    center = rng.uniform([0, 0], [w, h])
    size = rng.uniform(0.05, 0.3) * min(h, w)
    if rng.random() < 0.5:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        radius = size * np.exp(np.convolve(rng.normal(0, 0.5, 30), np.ones(7) / 7, "same")[3:27])
        pts = center + np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
        cv2.fillPoly(mask, [_fixed(pts)], 1, cv2.LINE_8, _SHIFT)
    else:
        pts = center + np.cumsum(rng.normal(0, size / 2, (int(rng.integers(2, 6)), 2)), axis=0)
        cv2.polylines(mask, [_fixed(pts)], False, 1, int(rng.integers(2, 6)), cv2.LINE_8, _SHIFT)
    return mask


def _finish(rng, canvas: np.ndarray) -> np.ndarray:
    h, w = canvas.shape[:2]
    light = 0.65 + 0.7 * _smooth_field(rng, (h, w), int(rng.integers(2, 4)))
    image = (canvas * light * rng.uniform(0.8, 1.15) + rng.uniform(-20, 20)).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.0))
    noise = np.empty_like(image)
    cv2.setRNGSeed(int(rng.integers(2**31)))  # OpenCV's generator is much faster than numpy's
    cv2.randn(noise, 0.0, float(rng.uniform(2, 9)))
    return np.clip(image + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Scenes


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


# ---------------------------------------------------------------------------------------
# Files


def _write_png(path: str, labels: np.ndarray):
    image = Image.fromarray(labels, mode="P")
    image.putpalette(voc_palette().flatten().tolist())
    image.save(path)


def _xml(sample: SyntheticSample) -> ET.ElementTree:
    h, w = sample.instances.shape
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{sample.name}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "atto-detectron synthetic VOC"
    size = ET.SubElement(root, "size")
    for key, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segmented").text = "1"
    for obj in sample.objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj.class_name
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(obj.difficult))
        ys, xs = np.nonzero(obj.visible)
        box = ET.SubElement(node, "bndbox")
        # VOC boxes are 1-based and inclusive.
        for key, value in (
            ("xmin", xs.min()),
            ("ymin", ys.min()),
            ("xmax", xs.max()),
            ("ymax", ys.max()),
        ):
            ET.SubElement(box, key).text = str(int(value) + 1)
    ET.indent(root)
    return ET.ElementTree(root)


def _write_jpeg(voc_root: str, sample: SyntheticSample, jpeg_quality: int):
    cv2.imwrite(
        os.path.join(voc_root, "JPEGImages", f"{sample.name}.jpg"),
        sample.image[:, :, ::-1],
        [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality],
    )


def _jpeg_quality(seed: int, index: int) -> int:
    return int(75 + (index * 7919 + seed) % 21)  # varied, as in photo collections


def write_sample(voc_root: str, sample: SyntheticSample, jpeg_quality: int = 90):
    """Writes a sample's JPEG, label PNGs and XML under ``voc_root`` (the VOC2012 folder)."""
    _write_jpeg(voc_root, sample, jpeg_quality)
    _write_png(os.path.join(voc_root, "SegmentationObject", f"{sample.name}.png"), sample.instances)
    _write_png(os.path.join(voc_root, "SegmentationClass", f"{sample.name}.png"), sample.classes)
    _xml(sample).write(os.path.join(voc_root, "Annotations", f"{sample.name}.xml"))


def _render_and_write(job) -> int:
    voc_root, seed, split, index, long_side = job
    sample = render_sample(seed, split, index, long_side)
    write_sample(voc_root, sample, jpeg_quality=_jpeg_quality(seed, index))
    return len(sample.objects)


# Written next to the split lists: the arguments the data was generated with.
GENERATOR_FILE = "generator.json"


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


# ---------------------------------------------------------------------------------------
# SBD


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

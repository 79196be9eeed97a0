"""A small generated ImageFolder dataset that a classifier can learn in minutes on a CPU.

Each class is a (shape, colour) pair: eight shapes (filled circle, square, triangle,
cross, ring, diamond, striped square, checkerboard) in four hue bands (red, green,
blue, yellow). Classes share colours and shapes: classes 0-7 are the eight shapes, two
per colour, and classes 8-31 repeat the shapes in the other colours, so that colour
alone does not identify a class. Every image draws its shape at a random position,
size, rotation and hue within the band, on a random low-saturation gradient background,
adds Gaussian noise and is stored as a JPEG. Each image is a function of (seed, split,
class, index) only, so a given seed always gives the same files.
"""

import json
import math
import os
from typing import Dict, List, Tuple

import cv2
import numpy as np

__all__ = [
    "SYNTHETIC_SHAPES",
    "SYNTHETIC_COLOURS",
    "MAX_SYNTHETIC_CLASSES",
    "synthetic_class_names",
    "render_synthetic_image",
    "make_synthetic_imagefolder",
]

SYNTHETIC_SHAPES = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "diamond",
    "stripes",
    "checker",
)
# Hue band centres in OpenCV's hue units (0..180).
SYNTHETIC_COLOURS = {"red": 0, "green": 60, "blue": 120, "yellow": 30}
MAX_SYNTHETIC_CLASSES = len(SYNTHETIC_SHAPES) * len(SYNTHETIC_COLOURS)

_SPLITS = {"train": 0, "val": 1}


def _class_definition(index: int) -> Tuple[str, str]:
    # Class i has shape i mod 8 and colour (i + i // 8) mod 4: the first 32 indices are
    # the 32 distinct (shape, colour) pairs, and consecutive classes differ in both.
    colours = list(SYNTHETIC_COLOURS)
    shape = SYNTHETIC_SHAPES[index % len(SYNTHETIC_SHAPES)]
    colour = colours[(index + index // len(SYNTHETIC_SHAPES)) % len(colours)]
    return shape, colour


def synthetic_class_names(num_classes: int) -> List[str]:
    """Folder names of the first ``num_classes`` classes, e.g. ["00_red_circle", ...]."""
    if not 2 <= num_classes <= MAX_SYNTHETIC_CLASSES:
        raise ValueError(
            f"num_classes must be between 2 and {MAX_SYNTHETIC_CLASSES} (the number of "
            f"(shape, colour) pairs); got {num_classes}"
        )
    return ["{:02d}_{}_{}".format(i, *reversed(_class_definition(i))) for i in range(num_classes)]


def _hsv_to_bgr(hue: float, saturation: float, value: float) -> Tuple[int, int, int]:
    pixel = np.array([[[hue % 180, saturation, value]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0])


def _polygon(center, radius: float, angle: float, corners: int) -> np.ndarray:
    points = []
    for k in range(corners):
        theta = angle + 2 * math.pi * k / corners
        points.append((center[0] + radius * math.cos(theta), center[1] + radius * math.sin(theta)))
    return np.round(np.array(points)).astype(np.int32)


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 (size, size) mask, 255 inside the shape."""
    mask = np.zeros((size, size), dtype=np.uint8)
    radius = rng.uniform(0.2, 0.32) * size
    margin = radius * 1.05
    center = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(0, 2 * math.pi)
    c = tuple(int(round(v)) for v in center)
    r = int(round(radius))
    if shape == "circle":
        cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
    elif shape == "ring":
        cv2.circle(mask, c, r, 255, max(2, r // 3), cv2.LINE_AA)
    elif shape == "triangle":
        cv2.fillPoly(mask, [_polygon(center, radius, angle, 3)], 255, cv2.LINE_AA)
    elif shape in ("square", "stripes", "checker"):
        cv2.fillPoly(mask, [_polygon(center, radius, angle, 4)], 255, cv2.LINE_AA)
        if shape != "square":
            # A texture inside the square: stripes along one direction, or a checkerboard.
            period = max(3.0, radius / 2.5)
            ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
            u = (xs - center[0]) * math.cos(angle) + (ys - center[1]) * math.sin(angle)
            v = -(xs - center[0]) * math.sin(angle) + (ys - center[1]) * math.cos(angle)
            on = np.floor(u / period) % 2 == 0
            if shape == "checker":
                on ^= np.floor(v / period) % 2 == 0
            mask[~on] = 0
    elif shape == "diamond":
        # A rhombus: a square squashed along one diagonal.
        points = _polygon((0.0, 0.0), radius, 0.0, 4).astype(np.float64)
        points[:, 1] *= 0.55
        rotation = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        points = points @ rotation.T + center
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)
    elif shape == "cross":
        half_width = max(1.5, radius / 3.5)
        for theta in (angle, angle + math.pi / 2):
            direction = np.array([math.cos(theta), math.sin(theta)])
            normal = np.array([-direction[1], direction[0]])
            corners = [
                center + s * radius * direction + t * half_width * normal
                for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))
            ]
            cv2.fillPoly(mask, [np.round(np.array(corners)).astype(np.int32)], 255, cv2.LINE_AA)
    else:
        raise ValueError(f"Unknown shape {shape!r}; available: {SYNTHETIC_SHAPES}")
    return mask


def render_synthetic_image(
    class_index: int, size: int, rng: np.random.Generator, noise_std: float = 12.0
) -> np.ndarray:
    """
    Draws one image of class ``class_index``.

    Args:
        class_index: 0 .. MAX_SYNTHETIC_CLASSES - 1.
        size: side of the square image, in pixels.
        rng: the source of all randomness of this image.
        noise_std: standard deviation of the additive Gaussian pixel noise (0..255 scale).

    Returns:
        ndarray: ``(size, size, 3)`` uint8 BGR image (OpenCV's channel order).
    """
    shape, colour = _class_definition(class_index)
    # Background: a linear gradient between two random low-saturation colours.
    start = np.array(_hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 60), rng.uniform(60, 200)))
    end = np.array(_hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 60), rng.uniform(60, 200)))
    direction = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    t = (xs * math.cos(direction) + ys * math.sin(direction) + 1.5) / 3.0
    image = start[None, None, :] * (1 - t[..., None]) + end[None, None, :] * t[..., None]

    hue = SYNTHETIC_COLOURS[colour] + rng.uniform(-8, 8)
    foreground = np.array(_hsv_to_bgr(hue, rng.uniform(170, 255), rng.uniform(170, 255)))
    alpha = _shape_mask(shape, size, rng).astype(np.float32)[..., None] / 255.0
    image = image * (1 - alpha) + foreground[None, None, :] * alpha
    image = image + rng.normal(0.0, noise_std, size=image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def make_synthetic_imagefolder(
    root: str,
    num_classes: int = 10,
    train_per_class: int = 100,
    val_per_class: int = 30,
    image_size: int = 64,
    seed: int = 0,
    jpeg_quality: int = 90,
) -> Dict:
    """
    Writes ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg`` (the layout of
    torchvision's ImageFolder and of ImageNet50) and ``root/dataset.json`` describing them.

    Args:
        root: output folder; files already there with the same names are overwritten.
        num_classes: 2 .. MAX_SYNTHETIC_CLASSES.
        train_per_class, val_per_class: images per class in each split.
        image_size: side of the square images, in pixels.
        seed: the same seed gives the same images.
        jpeg_quality: OpenCV's JPEG quality, 0..100.

    Returns:
        dict: what ``dataset.json`` holds (classes, counts, size, seed).
    """
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16 pixels; got {image_size}")
    classes = synthetic_class_names(num_classes)
    counts = {"train": train_per_class, "val": val_per_class}
    for split, count in counts.items():
        if count < 1:
            raise ValueError(f"{split}_per_class must be at least 1; got {count}")
        for class_index, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, _SPLITS[split], class_index, i])
                image = render_synthetic_image(class_index, image_size, rng)
                path = os.path.join(folder, f"{name}_{i:05d}.jpg")
                if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                    raise OSError(f"Could not write {path}: check that the folder is writable")
    description = {
        "classes": classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "image_size": image_size,
        "seed": seed,
    }
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump(description, f, indent=2)
    return description

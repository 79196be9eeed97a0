"""
The silhouettes of the generated VOC classes (:data:`SYNTHETIC_CLASSES`): each class is
drawn as a list of parts (wings, sails, wheels, leaves, a screen, ...), each part a mask
and a paint role, in a random pose (position, size, aspect ratio, rotation, flip).
"""

import math
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from ..data.voc_meta import VOC_CLASS_NAMES

__all__ = ["SYNTHETIC_CLASSES"]

# The VOC classes that have a shape below; their order is part of the random stream.
SYNTHETIC_CLASSES = (
    "aeroplane",
    "bird",
    "boat",
    "car",
    "pottedplant",
    "tvmonitor",
)


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

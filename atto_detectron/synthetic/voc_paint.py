"""
How the generated VOC images look: textures and colours of the objects' parts, the
unevenly lit background, unlabelled clutter, and the final lighting, blur and noise.
"""

import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .voc_shapes import _SHIFT, _fixed


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

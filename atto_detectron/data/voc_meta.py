"""Pascal VOC's 20 classes and its label palette."""

from typing import List

import numpy as np

from detectron2.data.datasets.pascal_voc import CLASS_NAMES

__all__ = ["VOC_CLASS_NAMES", "VOC_VOID", "voc_palette", "voc_thing_colors"]

# aeroplane, bicycle, ..., tvmonitor: the standard order. In the label PNGs class k
# (1..20) is category_id k - 1.
VOC_CLASS_NAMES = tuple(CLASS_NAMES)

# The label of the band around every object outline (and of unlabelled objects) in
# SegmentationObject / SegmentationClass: part of no instance and of no class.
VOC_VOID = 255


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """
    The VOCdevkit colour map (``labelcolormap.m``): the bits of each label spread over
    the R, G and B channels, most significant first.

    Returns:
        ndarray: (num_colors, 3) uint8 RGB; row 0 is background (black), row 255 void.
    """
    labels = np.arange(num_colors)
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for shift in range(8):
        for channel in range(3):
            bit = (labels >> (3 * shift + channel)) & 1
            palette[:, channel] |= (bit << (7 - shift)).astype(np.uint8)
    return palette


def voc_thing_colors() -> List[List[int]]:
    """The palette colours of the 20 classes, RGB, in VOC_CLASS_NAMES order."""
    return voc_palette()[1 : len(VOC_CLASS_NAMES) + 1].tolist()

"""
Mask pasting on CPU as two small matrix products per mask.

Mask R-CNN predicts each mask on an ``M x M`` grid (28 x 28) over its box; post-processing
pastes it into the image: bilinear resampling onto the image pixels inside the box
(:func:`detectron2.layers.mask_ops.paste_masks_in_image`, ``F.grid_sample`` with
``align_corners=False`` and zero padding), then a threshold. Bilinear resampling on a
grid whose rows and columns are independent is separable:

    region = W_y @ mask @ W_x^T

with ``W_y`` (region height x M) and ``W_x`` (region width x M) holding each pixel's two
interpolation weights along one axis (zero where a neighbour falls outside the mask, as
grid_sample's zero padding). For a 150 x 130 pixel box that is about 0.6M multiply-adds
in two dense products instead of a gather of four neighbours per pixel, and the weights
of all boxes are built at once.

:func:`paste_masks_separable` computes what Detectron2's CPU path computes (one box at a
time, over the box's pixels plus one on each side) up to float rounding: a pixel can
differ only where its value is within rounding (~1e-7) of the threshold. Its output is
allocated so that the pages outside the boxes are not written (:func:`_zeros_untouched`).
:class:`SeparablePasteROIMasks` is Detectron2's :class:`~detectron2.structures.ROIMasks`
with this paste, and :func:`detector_postprocess` is Detectron2's with it: the post-
processing of :class:`~atto_detectron.modeling.GeneralizedRCNNSeparablePaste` and of the
exported models (:class:`~atto_detectron.deploy.ExportedModel`).
"""

from typing import Tuple, Union

import numpy as np
import torch
from torch import Tensor

from detectron2.modeling.postprocessing import detector_postprocess as d2_detector_postprocess
from detectron2.structures import Boxes, Instances, ROIMasks

__all__ = ["paste_masks_separable", "SeparablePasteROIMasks", "detector_postprocess"]


def _regions(boxes: Tensor, height: int, width: int) -> Tensor:
    """
    Per box, the pixels that Detectron2's CPU paste computes: ``(N, 4)`` int64 ``x0, y0,
    x1, y1`` (end exclusive), the box rounded outwards plus one pixel, within the image.
    """
    start = torch.clamp(torch.floor(boxes[:, :2]) - 1, min=0)
    x1 = torch.clamp(torch.ceil(boxes[:, 2]) + 1, max=width)
    y1 = torch.clamp(torch.ceil(boxes[:, 3]) + 1, max=height)
    return torch.cat([start, x1[:, None], y1[:, None]], dim=1).to(torch.int64)


def _axis_weights(
    low: Tensor, high: Tensor, start: Tensor, length: Tensor, size: int
) -> Tuple[Tensor, ...]:
    """
    Bilinear weights along one axis for every box (grid_sample, ``align_corners=False``,
    zero padding).

    Args:
        low, high: ``(N,)`` the box's extent along the axis (image pixels).
        start, length: ``(N,)`` int64, the first pixel and the number of pixels pasted.
        size: M, the mask's size along the axis.

    Returns:
        tuple of N tensors, the n-th ``(length[n], size)``.
    """
    total = int(length.sum())
    if total == 0:
        return tuple(low.new_zeros(0, size) for _ in range(len(low)))
    owner = torch.repeat_interleave(torch.arange(len(low)), length)
    offsets = torch.cumsum(length, 0) - length
    pixel = torch.arange(total) - offsets[owner] + start[owner]
    # Image pixel centre -> [-1, 1] over the box (Detectron2's grid) -> mask coordinate.
    grid = (pixel.to(low.dtype) + 0.5 - low[owner]) / (high - low)[owner] * 2 - 1
    source = (grid + 1) * (size / 2) - 0.5
    first = torch.floor(source)
    frac = source - first
    # Columns 1..size are the mask's; 0 and size + 1 take neighbours outside it.
    left = (first.to(torch.int64) + 1).clamp(0, size + 1)
    right = (first.to(torch.int64) + 2).clamp(0, size + 1)
    weights = low.new_zeros(total, size + 2)
    rows = torch.arange(total)
    weights[rows, left] = 1 - frac
    weights[rows, right] = frac
    # left == right only when both are outside the mask (a dropped column).
    return torch.split(weights[:, 1 : size + 1], length.tolist())


def _zeros_untouched(shape: Tuple[int, ...], boolean: bool, device) -> Tensor:
    """
    A zero tensor whose memory is only written where it is used. A mask is set in its box
    region only, while the ``(N, H, W)`` output is N full images (85 MB for 100 masks at
    800 x 1067): ``torch.zeros`` writes all of it (the kernel maps and zero-fills every
    page on first touch, ~50 ms here), while numpy's ``zeros`` takes calloc's memory,
    whose pages the kernel provides zero-filled when they are first written or read.
    """
    if device.type != "cpu":
        return torch.zeros(shape, dtype=torch.bool if boolean else torch.uint8, device=device)
    return torch.from_numpy(np.zeros(shape, dtype=np.bool_ if boolean else np.uint8))


def paste_masks_separable(
    masks: Tensor,
    boxes: Union[Tensor, Boxes],
    image_shape: Tuple[int, int],
    threshold: float = 0.5,
) -> Tensor:
    """
    Pastes masks into the image, as :func:`detectron2.layers.mask_ops.paste_masks_in_image`
    (see the module docstring).

    Args:
        masks: ``(N, M, M)`` mask probabilities over their boxes.
        boxes: ``(N, 4)`` XYXY boxes in image pixels (Tensor or Boxes).
        image_shape: ``(height, width)`` of the image.
        threshold: a pixel is in the mask where its value is ``>= threshold``; below 0,
            the values times 255 as uint8 are returned instead.

    Returns:
        Tensor: ``(N, height, width)``, bool (uint8 for a negative threshold).
    """
    if isinstance(boxes, Boxes):
        boxes = boxes.tensor
    height, width = int(image_shape[0]), int(image_shape[1])
    n = masks.shape[0]
    pasted = _zeros_untouched((n, height, width), threshold >= 0, masks.device)
    if n == 0:
        return pasted
    masks = masks.float() if not masks.dtype.is_floating_point else masks
    boxes = boxes.to(masks.dtype)
    finite = torch.isfinite(boxes).all(dim=1)
    regions = _regions(torch.where(finite[:, None], boxes, 0.0), height, width)
    sizes = (regions[:, 2:] - regions[:, :2]).clamp(min=0)
    sizes[~finite] = 0  # a box that is not finite pastes nothing
    weights_x = _axis_weights(boxes[:, 0], boxes[:, 2], regions[:, 0], sizes[:, 0], masks.shape[2])
    weights_y = _axis_weights(boxes[:, 1], boxes[:, 3], regions[:, 1], sizes[:, 1], masks.shape[1])
    corners, sizes = regions.tolist(), sizes.tolist()
    for i in range(n):
        x0, y0, x1, y1 = corners[i]
        if not (sizes[i][0] and sizes[i][1]):
            continue
        values = weights_y[i] @ masks[i] @ weights_x[i].T
        if threshold >= 0:
            pasted[i, y0:y1, x0:x1] = values >= threshold
        else:
            pasted[i, y0:y1, x0:x1] = (values * 255).to(torch.uint8)
    return pasted


class SeparablePasteROIMasks(ROIMasks):
    """
    :class:`~detectron2.structures.ROIMasks` whose ``to_bitmasks`` pastes with
    :func:`paste_masks_separable` on CPU (Detectron2's paste elsewhere, and while
    tracing or scripting). Indexing and ``to`` keep the class.
    """

    def to(self, device) -> "SeparablePasteROIMasks":
        return SeparablePasteROIMasks(self.tensor.to(device))

    def __getitem__(self, item) -> "SeparablePasteROIMasks":
        return SeparablePasteROIMasks(super().__getitem__(item).tensor)

    def to_bitmasks(self, boxes, height, width, threshold=0.5):
        from detectron2.structures import BitMasks

        if (
            torch.jit.is_tracing()
            or torch.jit.is_scripting()
            or self.tensor.device.type != "cpu"
            or isinstance(height, Tensor)
        ):
            return super().to_bitmasks(boxes, height, width, threshold)
        return BitMasks(paste_masks_separable(self.tensor, boxes, (height, width), threshold))


def detector_postprocess(
    results: Instances, output_height: int, output_width: int, mask_threshold: float = 0.5
) -> Instances:
    """
    :func:`detectron2.modeling.postprocessing.detector_postprocess` with masks pasted by
    :class:`SeparablePasteROIMasks`: boxes scaled to the output size and clipped, empty
    ones removed, masks pasted into the output image.
    """
    if results.has("pred_masks") and not isinstance(results.pred_masks, SeparablePasteROIMasks):
        masks = results.pred_masks
        # (N, 1, M, M) from the mask head, or Detectron2's ROIMasks.
        masks = masks.tensor if isinstance(masks, ROIMasks) else masks[:, 0, :, :]
        results = Instances(results.image_size, **results.get_fields())  # the caller's stays
        results.pred_masks = SeparablePasteROIMasks(masks)
    return d2_detector_postprocess(results, output_height, output_width, mask_threshold)

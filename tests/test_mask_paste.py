"""Mask pasting as two matrix products (atto_detectron.modeling.mask_paste) and its meta-arch."""

import os

import pytest
import torch

from detectron2.layers.mask_ops import paste_masks_in_image
from detectron2.modeling import build_model
from detectron2.modeling.postprocessing import detector_postprocess as d2_detector_postprocess
from detectron2.structures import Boxes, Instances

from atto_detectron.config import load_config
from atto_detectron.modeling import (
    GeneralizedRCNNSeparablePaste,
    SeparablePasteROIMasks,
    detector_postprocess,
    paste_masks_separable,
)

from .helpers import CONFIGS

HEIGHT, WIDTH = 120, 160


def _masks_and_boxes(n=40, seed=0, smooth=True):
    g = torch.Generator().manual_seed(seed)
    if smooth:  # like a mask head's: smooth logits over the box
        logits = torch.randn(n, 1, 7, 7, generator=g) * 4
        masks = torch.sigmoid(torch.nn.functional.interpolate(logits, size=28, mode="bilinear"))
        masks = masks[:, 0]
    else:  # values near 0.5 everywhere: many pixels at the threshold
        masks = 0.5 + 0.01 * torch.randn(n, 28, 28, generator=g)
    # Detectron2's paste needs boxes that reach into the image (detector_postprocess clips).
    xy = torch.rand(n, 2, generator=g) * torch.tensor([WIDTH, HEIGHT]) - 3
    wh = torch.rand(n, 2, generator=g) ** 2 * torch.tensor([WIDTH, HEIGHT]) + 0.3
    boxes = torch.cat([xy, xy + wh], dim=1)
    # Boxes across the image's edges, sub-pixel, at integer coordinates.
    boxes[0] = torch.tensor([-5.0, -5.0, WIDTH + 5.0, HEIGHT + 5.0])
    boxes[1] = torch.tensor([10.2, 20.7, 10.6, 21.0])
    boxes[2] = torch.tensor([30.0, 40.0, 70.0, 90.0])
    boxes[3] = torch.tensor([WIDTH - 10.0, 5.0, WIDTH + 30.0, 25.0])
    return masks, boxes


@pytest.mark.parametrize("smooth", [True, False])
def test_pasted_masks_are_detectron2s_except_at_the_threshold(smooth):
    masks, boxes = _masks_and_boxes(smooth=smooth)
    expected = paste_masks_in_image(masks, Boxes(boxes), (HEIGHT, WIDTH), threshold=0.5)
    pasted = paste_masks_separable(masks, boxes, (HEIGHT, WIDTH), threshold=0.5)
    assert pasted.dtype == torch.bool and pasted.shape == expected.shape
    # Detectron2's values as uint8 (x 255, truncated): 127 is [0.498, 0.502).
    soft = paste_masks_in_image(masks, Boxes(boxes), (HEIGHT, WIDTH), threshold=-1)
    differ = pasted != expected
    assert set(soft[differ].tolist()) <= {127}
    assert differ.sum() <= 1e-4 * expected.sum() + (0 if smooth else 50)
    assert expected.any(dim=(1, 2)).sum() > 30  # the comparison covers real masks
    # The soft form agrees to the truncation of x 255.
    soft_pasted = paste_masks_separable(masks, Boxes(boxes), (HEIGHT, WIDTH), threshold=-1)
    assert soft_pasted.dtype == torch.uint8
    assert (soft_pasted.int() - soft.int()).abs().max() <= 1


def test_no_masks_and_degenerate_boxes():
    empty = paste_masks_separable(torch.zeros(0, 28, 28), torch.zeros(0, 4), (HEIGHT, WIDTH))
    assert empty.shape == (0, HEIGHT, WIDTH)
    masks = torch.ones(3, 28, 28)
    boxes = torch.tensor(
        [[10.0, 10.0, 10.0, 30.0], [float("nan"), 0.0, 5.0, 5.0], [WIDTH + 9, 0, WIDTH + 20, 9]]
    )
    assert not paste_masks_separable(masks, boxes, (HEIGHT, WIDTH)).any()


def test_roi_masks_keep_the_paste_through_indexing():
    masks, boxes = _masks_and_boxes(n=6)
    roi = SeparablePasteROIMasks(masks)
    assert isinstance(roi[1:4], SeparablePasteROIMasks) and len(roi[1:4]) == 3
    assert isinstance(roi[torch.tensor([True, False] * 3)], SeparablePasteROIMasks)
    bitmasks = roi.to_bitmasks(Boxes(boxes), HEIGHT, WIDTH).tensor
    assert torch.equal(bitmasks, paste_masks_separable(masks, boxes, (HEIGHT, WIDTH)))


def test_detector_postprocess_matches_detectron2s():
    masks, boxes = _masks_and_boxes(n=10)
    boxes[4] = torch.tensor([WIDTH + 10.0, 5.0, WIDTH + 30.0, 25.0])  # outside the image

    def raw():  # Detectron2's post-processing scales the boxes in place: one copy each
        instances = Instances((HEIGHT, WIDTH))
        instances.pred_boxes = Boxes(boxes.clone())
        instances.scores = torch.linspace(0, 1, 10)
        instances.pred_classes = torch.arange(10)
        instances.pred_masks = masks[:, None].clone()
        return instances

    given = raw()
    ours = detector_postprocess(given, 2 * HEIGHT, 2 * WIDTH)
    theirs = d2_detector_postprocess(raw(), 2 * HEIGHT, 2 * WIDTH)
    assert isinstance(given.pred_masks, torch.Tensor)  # the caller's masks stay a tensor
    assert len(ours) == len(theirs) == 9  # the box outside the image is dropped by both
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert ours.pred_masks.shape == theirs.pred_masks.shape == (9, 2 * HEIGHT, 2 * WIDTH)
    assert (ours.pred_masks == theirs.pred_masks).float().mean() > 0.99999


def test_meta_arch_outputs_are_generalized_rcnns():
    cfg = load_config(os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml"))
    cfg.defrost()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert type(model) is GeneralizedRCNNSeparablePaste
    cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    reference = build_model(cfg).eval()
    reference.load_state_dict(model.state_dict())
    inputs = [{"image": torch.rand(3, 96, 128) * 255, "height": 192, "width": 256}]
    with torch.no_grad():
        (ours,), (theirs,) = model(inputs), reference(inputs)
    ours, theirs = ours["instances"], theirs["instances"]
    assert ours.image_size == theirs.image_size == (192, 256) and len(ours) > 0
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert torch.equal(ours.scores, theirs.scores)
    assert (ours.pred_masks == theirs.pred_masks).float().mean() > 0.9999
    with torch.no_grad():
        raw = model.inference(inputs, do_postprocess=False)
    assert raw[0].pred_masks.shape[1:] == (1, 28, 28)  # raw outputs are unchanged


def test_export_sees_a_plain_generalized_rcnn():
    from detectron2.modeling import GeneralizedRCNN

    from atto_detectron.modeling import as_generalized_rcnn

    cfg = load_config(os.path.join(CONFIGS, "synth", "atto_maskrcnn_synth.yaml"))
    model = build_model(cfg).eval()
    plain = as_generalized_rcnn(model)
    assert type(plain) is GeneralizedRCNN and not plain.training
    assert plain.backbone is model.backbone and plain.roi_heads is model.roi_heads
    assert torch.equal(plain.pixel_mean, model.pixel_mean)
    inputs = [{"image": torch.rand(3, 64, 96) * 255}]
    with torch.no_grad():
        (ours,), (theirs,) = (m.inference(inputs, do_postprocess=False) for m in (model, plain))
    assert torch.equal(ours.pred_boxes.tensor, theirs.pred_boxes.tensor)
    assert as_generalized_rcnn(plain) is plain

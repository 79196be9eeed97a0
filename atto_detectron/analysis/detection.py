"""Complexity of whole Mask R-CNN models, part by part, at a fixed workload."""

from collections import OrderedDict
from typing import Dict

import torch
from fvcore.nn import parameter_count
from torch import nn

from detectron2 import model_zoo
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from ..config import load_config
from .complexity import mult_adds_by_module

__all__ = [
    "DETECTOR_PARTS",
    "r50_fpn_maskrcnn_config",
    "fix_test_workload",
    "detection_complexity",
    "zero_box_regression",
    "equalize_workload",
]

R50_FPN_MASKRCNN_ZOO_CONFIG = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"

# Part of a GeneralizedRCNN -> module names whose totals it adds up; "FPN" is the
# backbone without its bottom-up network.
DETECTOR_PARTS = OrderedDict(
    [
        ("backbone", ["backbone.bottom_up"]),
        ("FPN", ["backbone", "-backbone.bottom_up"]),
        ("RPN", ["proposal_generator"]),
        ("box head", ["roi_heads.box_head", "roi_heads.box_predictor"]),
        ("mask head", ["roi_heads.mask_head"]),
        ("total", [""]),
    ]
)


def r50_fpn_maskrcnn_config(num_classes: int = 20) -> CfgNode:
    """Detectron2's model-zoo ResNet-50-FPN Mask R-CNN, with ``num_classes`` classes."""
    cfg = load_config(model_zoo.get_config_file(R50_FPN_MASKRCNN_ZOO_CONFIG), device="cpu")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    return cfg


def fix_test_workload(cfg: CfgNode) -> CfgNode:
    """
    A copy of ``cfg`` with the NMS and score thresholds of inference switched off, so
    that the RPN returns ``RPN.POST_NMS_TOPK_TEST`` proposals and the box head keeps
    ``TEST.DETECTIONS_PER_IMAGE`` detections for the mask head: the most work the
    config allows per image, whatever the weights (see :func:`zero_box_regression`).
    """
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.RPN.NMS_THRESH = 1.0
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 1.0
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return cfg


def _zero_layers(*layers: nn.Module) -> None:
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def zero_box_regression(model: nn.Module) -> nn.Module:
    """
    Zeroes the box regression of a GeneralizedRCNN's RPN and box head (in place; returns
    it). Random box deltas can make boxes empty or non-finite, which the RPN and the box
    head then drop; zero deltas keep every anchor and proposal valid, so models with
    random weights process the configs' maxima of boxes.
    """
    _zero_layers(
        model.proposal_generator.rpn_head.anchor_deltas,
        model.roi_heads.box_predictor.bbox_pred,
    )
    return model


def equalize_workload(model: nn.Module) -> nn.Module:
    """
    Makes a random-weight GeneralizedRCNN (built from a :func:`fix_test_workload` config)
    process the same boxes as any other such model on the same image size: box
    regression zeroed (boxes stay valid) and all objectness and class scores equal (the
    kept proposals and detections are then chosen by position alone, identically for
    every backbone). Counts stay the configs' maxima: ``RPN.POST_NMS_TOPK_TEST``
    proposals, ``TEST.DETECTIONS_PER_IMAGE`` detections. In place; returns ``model``.
    """
    zero_box_regression(model)
    _zero_layers(
        model.proposal_generator.rpn_head.objectness_logits,
        model.roi_heads.box_predictor.cls_score,
    )
    return model


def _sum_parts(per_module: Dict[str, int]) -> Dict[str, int]:
    parts = OrderedDict()
    for part, names in DETECTOR_PARTS.items():
        total = 0
        for name in names:
            sign = -1 if name.startswith("-") else 1
            total += sign * per_module.get(name.lstrip("-"), 0)
        parts[part] = total
    return parts


def detection_complexity(cfg: CfgNode, image_size=(800, 1067)) -> Dict:
    """
    Parameters and mult-adds of the model ``cfg`` builds (random weights, eval mode), per
    part, on one ``image_size`` (H, W) image at the fixed workload of
    :func:`fix_test_workload`.

    Returns:
        dict with "params" and "mult_adds" (each part -> number, see
        :data:`DETECTOR_PARTS`), "image_size", "proposals" and "detections".
    """
    cfg = fix_test_workload(cfg)
    model = zero_box_regression(build_model(cfg)).eval()
    height, width = image_size
    inputs = [{"image": torch.zeros(3, height, width), "height": height, "width": width}]
    return {
        "params": _sum_parts(parameter_count(model)),
        "mult_adds": _sum_parts(mult_adds_by_module(model, inputs)),
        "image_size": [height, width],
        "proposals": cfg.MODEL.RPN.POST_NMS_TOPK_TEST,
        "detections": cfg.TEST.DETECTIONS_PER_IMAGE,
    }

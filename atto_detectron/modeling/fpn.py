"""AttoNet, MobileNet-V2 and ShuffleNet-V2 + Detectron2's FPN."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .attonet import build_attonet_backbone
from .peer_backbones import build_mobilenet_v2_backbone, build_shufflenet_v2_backbone

__all__ = [
    "build_attonet_fpn_backbone",
    "build_mobilenet_v2_fpn_backbone",
    "build_shufflenet_v2_fpn_backbone",
    "fpn_on",
]


def fpn_on(bottom_up: Backbone, cfg) -> FPN:
    """
    Detectron2's FPN on ``bottom_up``, configured by the standard ``cfg.MODEL.FPN`` keys;
    outputs "p2".."p6" for res2..res5 inputs (p6 by max-pooling p5, as in Detectron2's
    ResNet-FPN).
    """
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_attonet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """AttoNet bottom-up (``cfg.MODEL.ATTONET``) with Detectron2's FPN on top."""
    return fpn_on(build_attonet_backbone(cfg, input_shape), cfg)


@BACKBONE_REGISTRY.register()
def build_mobilenet_v2_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """MobileNet-V2 bottom-up (``cfg.MODEL.MOBILENET_V2``) with Detectron2's FPN on top."""
    return fpn_on(build_mobilenet_v2_backbone(cfg, input_shape), cfg)


@BACKBONE_REGISTRY.register()
def build_shufflenet_v2_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ShuffleNet-V2 bottom-up (``cfg.MODEL.SHUFFLENET_V2``) with Detectron2's FPN on top."""
    return fpn_on(build_shufflenet_v2_backbone(cfg, input_shape), cfg)

"""AttoNet + Detectron2's FPN."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .attonet import build_attonet_backbone

__all__ = ["build_attonet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_attonet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """
    AttoNet bottom-up (``cfg.MODEL.ATTONET``) with Detectron2's FPN on top, configured by
    the standard ``cfg.MODEL.FPN`` keys; outputs "p2".."p6" for res2..res5 inputs
    (p6 by max-pooling p5, as in Detectron2's ResNet-FPN).
    """
    bottom_up = build_attonet_backbone(cfg, input_shape)
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )

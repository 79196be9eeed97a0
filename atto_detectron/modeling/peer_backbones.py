"""
MobileNet-V2 and ShuffleNet-V2 (torchvision's, width 1.0) as Detectron2 backbones: the
peers that the paper's Table 2 compares AttoNets with, in the same Mask R-CNN.
"""

from torch import nn
from torchvision.models import mobilenet_v2, shufflenet_v2_x1_0

from detectron2.layers import ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY

from .attonet import attonet_norm
from .staged_backbone import StagedBackbone

__all__ = [
    "build_mobilenet_v2_backbone",
    "build_shufflenet_v2_backbone",
    "mobilenet_v2_backbone",
    "replace_batch_norms",
    "shufflenet_v2_backbone",
]


def replace_batch_norms(module: nn.Module, norm) -> nn.Module:
    """
    Replaces every ``nn.BatchNorm2d`` under ``module`` (in place) by the norm that
    :func:`detectron2.layers.get_norm` makes for ``norm`` ("BN", "SyncBN", "naiveSyncBN",
    "FrozenBN", "GN" with AttoNet's group rule, "" for none), with the same width.
    Returns ``module``.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            replacement = get_norm(attonet_norm(norm), child.num_features)
            setattr(module, name, replacement if replacement is not None else nn.Identity())
        else:
            replace_batch_norms(child, norm)
    return module


def mobilenet_v2_backbone(out_features=None, norm="BN", freeze_at: int = 0) -> StagedBackbone:
    """
    torchvision's MobileNet-V2 feature extractor (``mobilenet_v2().features``, random
    initialisation), all of it: stem = the first conv and block (stride 2), res2 =
    blocks 2-3 (24 channels, stride 4), res3 = 4-6 (32, stride 8), res4 = 7-13 (96,
    stride 16), res5 = 14-17 and the last 1x1 conv (1280, stride 32).
    """
    features = replace_batch_norms(mobilenet_v2(weights=None).features, norm)
    cuts = [(2, 4, 24), (4, 7, 32), (7, 14, 96), (14, 19, 1280)]
    stages = [
        (features[start:stop], ShapeSpec(channels=channels, stride=4 * 2**index))
        for index, (start, stop, channels) in enumerate(cuts)
    ]
    return StagedBackbone(
        features[:2], ShapeSpec(channels=16, stride=2), stages, out_features, freeze_at
    )


def shufflenet_v2_backbone(out_features=None, norm="BN", freeze_at: int = 0) -> StagedBackbone:
    """
    torchvision's ShuffleNet-V2 1.0x without its classifier (random initialisation):
    stem = conv1 (stride 2), res2 = the max-pool (24 channels, stride 4; ShuffleNet has
    no block at stride 4), res3..res5 = stage2..stage4 (116, 232, 464 channels at
    strides 8, 16, 32), with conv5 (1024 channels) at the end of res5.
    """
    net = replace_batch_norms(shufflenet_v2_x1_0(weights=None), norm)
    stages = [
        (net.maxpool, ShapeSpec(channels=24, stride=4)),
        (net.stage2, ShapeSpec(channels=116, stride=8)),
        (net.stage3, ShapeSpec(channels=232, stride=16)),
        (nn.Sequential(net.stage4, net.conv5), ShapeSpec(channels=1024, stride=32)),
    ]
    return StagedBackbone(
        net.conv1, ShapeSpec(channels=24, stride=2), stages, out_features, freeze_at
    )


def _build(factory, key: str, cfg):
    node = cfg.MODEL[key]
    try:
        return factory(node.OUT_FEATURES, node.NORM, cfg.MODEL.BACKBONE.FREEZE_AT)
    except ValueError as e:
        raise ValueError(f"MODEL.{key}.OUT_FEATURES or MODEL.BACKBONE.FREEZE_AT: {e}") from e


@BACKBONE_REGISTRY.register()
def build_mobilenet_v2_backbone(cfg, input_shape: ShapeSpec) -> StagedBackbone:
    """MobileNet-V2 from ``cfg.MODEL.MOBILENET_V2`` (OUT_FEATURES, NORM) and FREEZE_AT."""
    assert input_shape.channels == 3, "MobileNet-V2 takes 3-channel images."
    return _build(mobilenet_v2_backbone, "MOBILENET_V2", cfg)


@BACKBONE_REGISTRY.register()
def build_shufflenet_v2_backbone(cfg, input_shape: ShapeSpec) -> StagedBackbone:
    """ShuffleNet-V2 1.0x from ``cfg.MODEL.SHUFFLENET_V2`` (OUT_FEATURES, NORM) and FREEZE_AT."""
    assert input_shape.channels == 3, "ShuffleNet-V2 takes 3-channel images."
    return _build(shufflenet_v2_backbone, "SHUFFLENET_V2", cfg)

"""AttoNet, MobileNet-V2 and ShuffleNet-V2 + Detectron2's FPN."""

from typing import Dict

import torch
import torch.nn.functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from .attonet import build_attonet_backbone
from .peer_backbones import build_mobilenet_v2_backbone, build_shufflenet_v2_backbone

__all__ = [
    "MemoryLeanFPN",
    "build_attonet_fpn_backbone",
    "build_mobilenet_v2_fpn_backbone",
    "build_shufflenet_v2_fpn_backbone",
    "fpn_on",
]


class MemoryLeanFPN(FPN):
    """
    Detectron2's FPN, with the same modules, weights and outputs (bit for bit), whose
    forward frees memory as it goes: each bottom-up feature is released once its lateral
    conv has read it, and each top-down sum is formed in place in the lateral output.

    Detectron2's forward keeps every bottom-up feature and both addends of each sum alive
    until the end. At the finest level of a small backbone these are the largest tensors
    of the whole inference (AttoNet-A at 800 x 1088: res2 is 176 x 200 x 272, 38 MB, and
    each 96-channel p2-sized tensor 21 MB), so the FPN set the peak memory.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The top block may read a bottom-up feature (e.g. LastLevelP6P7 on res5): keep it.
        self._kept_bottom_up_feature = getattr(self.top_block, "in_feature", "")

    def _take(self, features: Dict[str, torch.Tensor], name: str) -> torch.Tensor:
        """``features[name]``, removed from ``features`` unless the top block needs it."""
        if name == self._kept_bottom_up_feature:
            return features[name]
        return features.pop(name)

    def forward(self, x):
        """
        Args:
            x: images, ``(N, C, H, W)``.

        Returns:
            dict[str, Tensor]: "p2".."p6" (for res2..res5 inputs), each
            ``(N, out_channels, ~H / stride, ~W / stride)``, as Detectron2's FPN.
        """
        bottom_up_features = self.bottom_up(x)
        results = []
        prev_features = self.lateral_convs[0](self._take(bottom_up_features, self.in_features[-1]))
        results.append(self.output_convs[0](prev_features))
        # All modules are looped over and the first skipped: TorchScript cannot slice them.
        for idx, (lateral_conv, output_conv) in enumerate(
            zip(self.lateral_convs, self.output_convs)
        ):
            if idx > 0:
                lateral = lateral_conv(self._take(bottom_up_features, self.in_features[-idx - 1]))
                # Adding in place into the lateral output gives the same values as
                # Detectron2's `lateral + top_down` without a third map-sized tensor;
                # neither addend is needed by autograd.
                prev_features = lateral.add_(
                    F.interpolate(prev_features, scale_factor=2.0, mode="nearest")
                )
                if self._fuse_type == "avg":
                    prev_features /= 2
                results.insert(0, output_conv(prev_features))

        if self.top_block is not None:
            if self.top_block.in_feature in bottom_up_features:
                top_block_in_feature = bottom_up_features[self.top_block.in_feature]
            else:
                top_block_in_feature = results[self._out_features.index(self.top_block.in_feature)]
            results.extend(self.top_block(top_block_in_feature))
        assert len(self._out_features) == len(results)
        return {f: res for f, res in zip(self._out_features, results)}


def fpn_on(bottom_up: Backbone, cfg) -> FPN:
    """
    Detectron2's FPN (as :class:`MemoryLeanFPN`) on ``bottom_up``, configured by the
    standard ``cfg.MODEL.FPN`` keys; outputs "p2".."p6" for res2..res5 inputs (p6 by
    max-pooling p5, as in Detectron2's ResNet-FPN).
    """
    return MemoryLeanFPN(
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

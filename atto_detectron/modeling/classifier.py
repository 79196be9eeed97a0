"""AttoNet image classifiers (the networks of Table 2)."""

from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import get_norm

from .attonet import AttoNet, attonet_norm
from .attonet_spec import AttoNetSpec

__all__ = ["AttoNetClassifier", "build_attonet_classifier"]


class AttoNetClassifier(nn.Module):
    """
    stem -> 16 modules (an :class:`AttoNet` backbone up to res5) -> norm -> ReLU
    -> global average pool -> FC.

    The final norm-ReLU closes the last pre-activation module (2 * o parameters).
    ``backbone`` holds the same layers, with the same names, as the Detectron2 backbone,
    so its weights initialize one.
    """

    def __init__(self, spec: Union[str, AttoNetSpec], num_classes: int = 51, norm="BN"):
        super().__init__()
        self.backbone = AttoNet(spec, out_features=["res5"], norm=norm)
        channels = self.backbone.output_shape()["res5"].channels
        self.final_norm = get_norm(attonet_norm(norm), channels)
        self.fc = nn.Linear(channels, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    @property
    def spec(self) -> AttoNetSpec:
        return self.backbone.spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: images, ``(N, 3, H, W)`` (224x224 in the paper).

        Returns:
            Tensor: logits, ``(N, num_classes)``.
        """
        x = self.backbone(x)["res5"]
        x = F.relu(self.final_norm(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def build_attonet_classifier(
    variant: Union[str, AttoNetSpec], num_classes: int = 51, norm="BN"
) -> AttoNetClassifier:
    """
    Args:
        variant: "A".."D" (case-insensitive, "AttoNet-A" works too) or an AttoNetSpec.
        num_classes: outputs of the FC layer; 51 as the paper's ImageNet50 classifiers.
        norm: see :func:`attonet_norm`.
    """
    return AttoNetClassifier(variant, num_classes=num_classes, norm=norm)

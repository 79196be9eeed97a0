"""Complexity of the Table 2 classifiers: AttoNet-A..D and the three baselines."""

from collections import OrderedDict
from typing import Callable, Dict

import torch
import torchvision
from torch import nn

from ..modeling import ATTONET_VARIANTS, build_attonet_classifier
from ..modeling.mobilenet_v1 import MobileNetV1
from .complexity import count_parameters, mult_adds_by_module

__all__ = [
    "CLASSIFIER_BUILDERS",
    "ATTONET_LAYER_KINDS",
    "build_reference_classifier",
    "attonet_layer_breakdown",
    "classifier_complexity",
]

CLASSIFIER_BUILDERS: Dict[str, Callable[[int], nn.Module]] = OrderedDict(
    [
        ("MobileNet-V1", lambda n: MobileNetV1(num_classes=n)),
        ("MobileNet-V2", lambda n: torchvision.models.mobilenet_v2(num_classes=n)),
        ("ShuffleNet-V2", lambda n: torchvision.models.shufflenet_v2_x1_0(num_classes=n)),
    ]
    + [
        (spec.name, lambda n, v=v: build_attonet_classifier(v, n))
        for v, spec in ATTONET_VARIANTS.items()
    ]
)

# Name of a leaf layer in AttoNetClassifier (its last component) -> layer kind.
ATTONET_LAYER_KINDS = OrderedDict(
    [
        ("conv1", "stem"),
        ("compression", "compression 1x1"),
        ("depthwise", "depthwise 3x3"),
        ("mixing", "mixing 1x1"),
        ("decompression", "decompression 1x1"),
        ("shortcut", "projection 1x1"),
        ("fc", "FC"),
    ]
)


def build_reference_classifier(name: str, num_classes: int = 51) -> nn.Module:
    """One of :data:`CLASSIFIER_BUILDERS` ("AttoNet-A", "MobileNet-V2", ...), in eval mode."""
    if name not in CLASSIFIER_BUILDERS:
        raise ValueError(f"Unknown classifier {name!r}; available: {list(CLASSIFIER_BUILDERS)}")
    return CLASSIFIER_BUILDERS[name](num_classes).eval()


def attonet_layer_breakdown(per_module: Dict[str, int]) -> Dict[str, int]:
    """
    Args:
        per_module: mult-adds per module name of an AttoNetClassifier
            (from :func:`mult_adds_by_module`).

    Returns:
        dict: layer kind (see :data:`ATTONET_LAYER_KINDS`) -> mult-adds, in that order.
    """
    totals = OrderedDict((kind, 0) for kind in ATTONET_LAYER_KINDS.values())
    for name, value in per_module.items():
        kind = ATTONET_LAYER_KINDS.get(name.rsplit(".", 1)[-1])
        if kind is not None:
            totals[kind] += value
    return totals


def classifier_complexity(name: str, num_classes: int = 51, image_size: int = 224) -> Dict:
    """
    Parameters and mult-adds of one classifier on a ``(1, 3, image_size, image_size)`` input.

    Returns:
        dict with "name", "params", "mult_adds" and, for AttoNets, "mult_adds_by_layer".
    """
    model = build_reference_classifier(name, num_classes)
    per_module = mult_adds_by_module(model, (torch.zeros(1, 3, image_size, image_size),))
    result = {"name": name, "params": count_parameters(model), "mult_adds": per_module[""]}
    if name.startswith("AttoNet"):
        result["mult_adds_by_layer"] = attonet_layer_breakdown(per_module)
    return result

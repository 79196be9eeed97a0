"""Inference-time fusion of batch normalization into the convolution before it."""

import copy
from typing import Tuple

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from detectron2.layers import FrozenBatchNorm2d

__all__ = ["FUSABLE_NORMS", "fuse_conv_bn", "fuse_bn"]

# Norms that apply a fixed per-channel affine map in eval mode, so that they fold into
# the weights and bias of the convolution before them. GroupNorm depends on the input
# and does not.
FUSABLE_NORMS: Tuple[type, ...] = (nn.BatchNorm2d, nn.SyncBatchNorm, FrozenBatchNorm2d)


def fuse_conv_bn(conv: nn.Conv2d) -> nn.Conv2d:
    """
    Folds ``conv.norm`` into ``conv``, for a Detectron2-style conv that applies its own
    norm (``detectron2.layers.Conv2d(..., norm=...)``: conv -> norm -> activation).

    Args:
        conv: a conv in eval mode whose ``norm`` is one of :data:`FUSABLE_NORMS`, in eval
            mode too.

    Returns:
        A new conv of the same class with the fused weight and bias and ``norm`` None
        (its activation, if any, is kept); ``conv`` is left unchanged.
    """
    norm = getattr(conv, "norm", None)
    if not isinstance(norm, FUSABLE_NORMS):
        raise TypeError(
            f"fuse_conv_bn: expected a conv whose .norm is one of "
            f"{[cls.__name__ for cls in FUSABLE_NORMS]}, got norm={type(norm).__name__}"
        )
    if conv.training or norm.training:
        raise ValueError("fuse_conv_bn: call model.eval() first; fusion uses running statistics")
    # fuse_conv_bn_eval deep-copies the conv (norm included) and sets weight and bias.
    fused = fuse_conv_bn_eval(conv, norm)
    fused.norm = None
    return fused


def fuse_bn(model: nn.Module) -> nn.Module:
    """
    An equivalent copy of ``model`` for inference in which every batch norm that
    directly follows a convolution is folded into it: in AttoNet the stem conv and the
    compression and mixing 1x1 convs of each module; in Detectron2's ResNet every conv.
    Batch norms that follow an addition (AttoNet's pre-activation norms), GroupNorm (FPN
    and mask head in the configs here) and all other layers stay as they are.

    Only convs that carry their norm as a ``norm`` attribute are fused (Detectron2's
    ``Conv2d``, which every AttoNet and ResNet conv is); that is what tells that the
    norm applies to the conv's output.

    Args:
        model: any module; it is not modified.

    Returns:
        nn.Module: a deep copy in eval mode; its outputs equal ``model.eval()``'s up to
        float rounding.
    """
    fused_model = copy.deepcopy(model).eval()
    for parent in list(fused_model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and isinstance(
                getattr(child, "norm", None), FUSABLE_NORMS
            ):
                setattr(parent, name, fuse_conv_bn(child))
    return fused_model

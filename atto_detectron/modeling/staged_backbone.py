"""A classifier's feature extractor, cut into a stem and stages res2..res5, as a backbone."""

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling import Backbone

from .attonet import attonet_norm
from .attonet_spec import STAGE_NAMES

__all__ = ["StagedBackbone", "replace_batch_norms"]


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


class StagedBackbone(Backbone):
    """
    A bottom-up network given as a stem and the stages "res2".."res5" (strides 4, 8, 16
    and 32), with Detectron2's ResNet conventions: the outputs are named after the
    stages, ``freeze_at`` freezes the stem and the first stages, and the backbone is
    scriptable. It holds the modules it is given, so its parameters are theirs.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[Tuple[nn.Module, int]],
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        """
        Args:
            stem: the layers before res2, any stride up to 4.
            stages: (module, output channels) of res2..res5, in order; res2's output has
                stride 4 and each later stage halves the resolution.
            out_features: names of the outputs among "res2".."res5"; default: all.
            freeze_at: 0 trains everything; 1 freezes the stem; k in 2..5 freezes the
                stem and stages res2 .. res<k> (as Detectron2's ResNet).
        """
        super().__init__()
        if len(stages) != len(STAGE_NAMES):
            raise ValueError(f"Expected {len(STAGE_NAMES)} stages, got {len(stages)}.")
        out_features = list(STAGE_NAMES if out_features is None else out_features)
        for name in out_features:
            if name not in STAGE_NAMES:
                raise ValueError(f"No output {name!r}; available: {list(STAGE_NAMES)}")
        self.stem = stem
        # A ModuleDict (keys "res2".."res5") keeps forward() scriptable.
        self.stages = nn.ModuleDict()
        self._out_feature_strides = {}
        self._out_feature_channels = {}
        for index, (name, (module, channels)) in enumerate(zip(STAGE_NAMES, stages)):
            self.stages[name] = module
            self._out_feature_strides[name] = 4 * 2**index
            self._out_feature_channels[name] = channels
        self._out_features = out_features
        self.freeze(freeze_at)

    def forward(self, x):
        """
        Args:
            x: images, ``(N, C, H, W)``.

        Returns:
            dict[str, Tensor]: the requested outputs; "resK" is
            ``(N, channels, ~H / 2**K, ~W / 2**K)``.
        """
        assert x.dim() == 4, f"Expected (N, C, H, W) inputs, got {x.shape}."
        if not self.training and x.device.type == "cpu":
            # As AttoNet: oneDNN's CPU convolutions compute in NHWC.
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = {}
        x = self.stem(x)
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    def output_shape(self):
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name], stride=self._out_feature_strides[name]
            )
            for name in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        return 32

    def freeze(self, freeze_at: int = 0):
        """
        Freezes the stem (freeze_at >= 1) and stages res2 .. res<freeze_at>: their
        parameters stop requiring grad and their BatchNorms become FrozenBatchNorm2d.

        Raises:
            ValueError: ``freeze_at`` is outside 0..5.
        """
        max_freeze_at = 1 + len(STAGE_NAMES)
        if not 0 <= freeze_at <= max_freeze_at:
            raise ValueError(
                f"freeze_at must be 0 (train everything), 1 (freeze the stem) or "
                f"2..{max_freeze_at} (also res2..res<k>); got {freeze_at}."
            )
        if freeze_at >= 1:
            self.stem = _frozen(self.stem)
        for index, name in enumerate(STAGE_NAMES, start=2):
            if freeze_at >= index:
                self.stages[name] = _frozen(self.stages[name])
        return self


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad = False
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)

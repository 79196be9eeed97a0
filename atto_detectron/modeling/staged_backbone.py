"""A bottom-up network cut into a stem and stages res2..res5, as a Detectron2 backbone."""

from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import Backbone

from .attonet_spec import STAGE_NAMES

__all__ = ["StagedBackbone"]


class StagedBackbone(Backbone):
    """
    A stem followed by the stages "res2".."res5" (or the first of them), with Detectron2's
    ResNet conventions: the outputs are named "stem" and after the stages, ``freeze_at``
    freezes the stem and the first stages, and the backbone is scriptable. It holds the
    modules it is given, so its parameters (and their state-dict keys "stem.*" and
    "stages.resK.*") are theirs. AttoNet and the peer backbones are built on it.
    """

    def __init__(
        self,
        stem: nn.Module,
        stem_shape: ShapeSpec,
        stages: Sequence[Tuple[nn.Module, ShapeSpec]],
        out_features: Optional[Sequence[str]] = None,
        freeze_at: int = 0,
    ):
        """
        Args:
            stem: the layers before res2.
            stem_shape: channels and stride of the stem's output.
            stages: (module, shape of its output) of res2, res3, ... in order, at most
                four; a network may stop after the last stage that it outputs.
            out_features: names of the outputs among "stem" and the stages'; default:
                all stages.
            freeze_at: 0 trains everything; 1 freezes the stem; k in 2..5 freezes the
                stem and stages res2 .. res<k> (as Detectron2's ResNet).

        Raises:
            ValueError: more than four stages, an unknown output name, or ``freeze_at``
                outside 0..5.
        """
        super().__init__()
        if len(stages) > len(STAGE_NAMES):
            raise ValueError(f"At most {len(STAGE_NAMES)} stages, got {len(stages)}.")
        names = STAGE_NAMES[: len(stages)]
        out_features = list(names if out_features is None else out_features)
        available = ("stem",) + names
        for name in out_features:
            if name not in available:
                raise ValueError(f"No output {name!r}; available: {list(available)}")
        self.stem = stem
        self._out_feature_strides = {"stem": stem_shape.stride}
        self._out_feature_channels = {"stem": stem_shape.channels}
        # A ModuleDict (keys "res2".."res5") keeps forward() scriptable.
        self.stages = nn.ModuleDict()
        for name, (module, shape) in zip(names, stages):
            self.stages[name] = module
            self._out_feature_strides[name] = shape.stride
            self._out_feature_channels[name] = shape.channels
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
            # oneDNN's CPU convolutions compute in NHWC: given NCHW, each conv reorders
            # its input and output, which costs as much as a thin 1x1 conv itself. The
            # outputs keep this layout (same values, other strides), as do the FPN's.
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
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

        Args:
            freeze_at: 0 (nothing) to 5 (the stem and res2..res5).

        Returns:
            self.

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
        for index, name in enumerate(self.stages.keys(), start=2):
            if freeze_at >= index:
                self.stages[name] = _frozen(self.stages[name])
        return self


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad = False
    return FrozenBatchNorm2d.convert_frozen_batchnorm(module)

"""AttoNet as a Detectron2 backbone: stem, residual modules (Fig. 2) and stages."""

from typing import Callable, Optional, Sequence, Union

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from torch import nn

from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY

from ..config import ConfigError
from .attonet_spec import IDENTITY, STAGE_NAMES, AttoModuleSpec, AttoNetSpec, get_attonet_spec
from .staged_backbone import StagedBackbone

__all__ = [
    "AttoNetStem",
    "AttoModule",
    "AttoNet",
    "attonet_norm",
    "build_attonet_backbone",
]


def _group_norm(channels: int) -> nn.GroupNorm:
    # AttoNet widths (139, 467, 5, ...) are rarely multiples of Detectron2's fixed 32
    # groups: use the largest group count <= 32 that divides the width.
    num_groups = max(g for g in range(1, 33) if channels % g == 0)
    return nn.GroupNorm(num_groups, channels)


def attonet_norm(norm: Union[str, Callable, None]) -> Union[str, Callable, None]:
    """
    Maps a norm name to what :func:`detectron2.layers.get_norm` takes, with "GN" adapted
    to AttoNet's widths (largest divisor <= 32 of the width as the group count). All
    other names ("BN", "SyncBN", "FrozenBN", "naiveSyncBN", "", ...) pass through.
    """
    return _group_norm if norm == "GN" else norm


class AttoNetStem(CNNBlockBase):
    """
    7x7 conv (stride 2) -> norm -> ReLU -> 3x3 max-pool (stride 2).

    Input ``(N, in_channels, H, W)``, output ``(N, out_channels, ceil(H/4), ceil(W/4))``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 8, norm="BN"):
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=7,
            stride=2,
            padding=3,
            bias=False,
            norm=get_norm(attonet_norm(norm), out_channels),
        )
        weight_init.c2_msra_fill(self.conv1)

    def forward(self, x):
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class AttoModule(CNNBlockBase):
    """
    The machine-designed residual module of Fig. 2, pre-activation style::

        x -> norm -> ReLU -+-> 1x1 compression (cin -> c) -> norm -> ReLU
                           |   -> 3x3 depthwise, multiplier M (c -> g = M*c, groups = c)
                           |   -> 1x1 mixing (g -> p) -> norm -> ReLU
                           |   -> 1x1 decompression (p -> o) ------------------------ (+) -> out
                           +-> 1x1 projection (cin -> o), only for a projection shortcut -^
        x ------------------- (identity shortcut) ------------------------------------^

    The stride (2 where the module downsamples) is on the 3x3 conv and the projection.
    Input ``(N, cin, H, W)``, output ``(N, o, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, spec: AttoModuleSpec, norm="BN"):
        super().__init__(in_channels, spec.out_channels, spec.stride)
        norm = attonet_norm(norm)
        c, g, p, o = spec.compression, spec.depthwise, spec.mixing, spec.out_channels

        self.preact_norm = get_norm(norm, in_channels)
        if spec.shortcut == IDENTITY:
            self.shortcut = None
        else:
            self.shortcut = Conv2d(in_channels, o, 1, stride=spec.stride, bias=False)
        self.compression = Conv2d(in_channels, c, 1, bias=False, norm=get_norm(norm, c))
        self.depthwise = Conv2d(c, g, 3, stride=spec.stride, padding=1, groups=c, bias=False)
        self.mixing = Conv2d(g, p, 1, bias=False, norm=get_norm(norm, p))
        self.decompression = Conv2d(p, o, 1, bias=False)

        for layer in [
            self.shortcut,
            self.compression,
            self.depthwise,
            self.mixing,
            self.decompression,
        ]:
            if layer is not None:
                weight_init.c2_msra_fill(layer)

    def forward(self, x):
        # In place where a tensor has no other use: on CPU every fresh full-resolution
        # tensor costs page faults, and this module is bound by memory traffic.
        if self.preact_norm is not None:
            out = F.relu_(self.preact_norm(x))
        else:  # norm "": x itself is the identity shortcut, keep it
            out = F.relu(x)
        if self.shortcut is not None:
            # As in pre-activation ResNets, the projection sees the normalized input.
            shortcut = self.shortcut(out)
        else:
            shortcut = x
        out = F.relu_(self.compression(out))
        out = self.depthwise(out)
        out = F.relu_(self.mixing(out))
        out = self.decompression(out)
        return out.add_(shortcut)


class AttoNet(StagedBackbone):
    """
    An AttoNet (any :class:`AttoNetSpec`) as a Detectron2 backbone.

    Outputs are named like Detectron2's ResNet: "stem" (stride 4) and "res2".."res5"
    (strides 4, 8, 16, 32). Stages are pre-activation, so "resN" outputs are the residual
    stream itself (not normalized); FPN's lateral convs take them as they are. Stages
    after the last requested output are not built.
    """

    def __init__(
        self,
        spec: Union[str, AttoNetSpec],
        in_channels: int = 3,
        out_features: Optional[Sequence[str]] = None,
        norm="BN",
        freeze_at: int = 0,
    ):
        """
        Args:
            spec: variant name ("A".."D", "AttoNet-A", ...) or an :class:`AttoNetSpec`.
            in_channels: channels of the input image.
            out_features: names of the outputs, among "stem", "res2".."res5";
                default: ["res5"].
            norm: normalization for all norm layers: "BN", "SyncBN", "FrozenBN", "GN",
                ... (see :func:`attonet_norm`).
            freeze_at: 0 trains everything; 1 freezes the stem; k in 2..5 freezes the
                stem and stages res2 .. res<k> (as Detectron2's ResNet).

        Raises:
            ValueError: an unknown output name or ``freeze_at`` outside 0..5.
        """
        spec = get_attonet_spec(spec)
        out_features = ["res5"] if out_features is None else list(out_features)
        valid = ("stem",) + STAGE_NAMES
        for name in out_features:
            if name not in valid:
                raise ValueError(f"AttoNet has no output {name!r}; available: {list(valid)}")
        num_stages = max(STAGE_NAMES.index(f) + 1 if f != "stem" else 0 for f in out_features)

        stem = AttoNetStem(in_channels, spec.stem_channels, norm=norm)
        channels, stride = stem.out_channels, stem.stride
        stages = []
        for module_specs in spec.stages[:num_stages]:
            blocks = []
            for module_spec in module_specs:
                blocks.append(AttoModule(channels, module_spec, norm=norm))
                channels = module_spec.out_channels
                stride *= module_spec.stride
            stages.append((nn.Sequential(*blocks), ShapeSpec(channels=channels, stride=stride)))
        stem_shape = ShapeSpec(channels=stem.out_channels, stride=stem.stride)
        super().__init__(stem, stem_shape, stages, out_features, freeze_at)
        self.spec = spec


@BACKBONE_REGISTRY.register()
def build_attonet_backbone(cfg, input_shape: ShapeSpec) -> AttoNet:
    """
    Builds an :class:`AttoNet` from ``cfg.MODEL.ATTONET`` (see :func:`add_attonet_config`):
    the spec file of ``SPEC`` when set, else the Table 1 network of ``VARIANT``, frozen
    up to Detectron2's ``MODEL.BACKBONE.FREEZE_AT``.
    """
    # fmt: off
    variant      = cfg.MODEL.ATTONET.SPEC or cfg.MODEL.ATTONET.VARIANT
    out_features = cfg.MODEL.ATTONET.OUT_FEATURES
    norm         = cfg.MODEL.ATTONET.NORM
    freeze_at    = cfg.MODEL.BACKBONE.FREEZE_AT
    # fmt: on
    try:
        spec = get_attonet_spec(variant)
    except ValueError as e:
        key = "MODEL.ATTONET.SPEC" if cfg.MODEL.ATTONET.SPEC else "MODEL.ATTONET.VARIANT"
        raise ConfigError(f"{key}: {e}") from e
    try:
        model = AttoNet(spec, input_shape.channels, out_features=out_features, norm=norm)
    except ValueError as e:
        raise ConfigError(f"MODEL.ATTONET.OUT_FEATURES: {e}") from e
    try:
        return model.freeze(freeze_at)
    except ValueError as e:
        raise ConfigError(f"MODEL.BACKBONE.FREEZE_AT: {e}") from e

"""The detector's neck in the search space: the FPN's width and which backbone levels it uses.

A :class:`NeckGenome` is two choices on top of the AttoNet: ``MODEL.FPN.OUT_CHANNELS``
(which is also the RPN head's width and the width the box and mask heads read) and
``MODEL.FPN.IN_FEATURES``, all four stages (``res2``..``res5``, FPN levels P2..P6) or the
three lower-resolution ones (``res3``..``res5``, levels P3..P6: no FPN, RPN or ROI work at
stride 4). :func:`apply_neck` writes a neck into a Detectron2 config together with what
must follow it:

* ``MODEL.RPN.IN_FEATURES``: the FPN's outputs (P6 included), and
  ``MODEL.ROI_HEADS.IN_FEATURES``: the same without P6, as Detectron2's FPN configs do;
* ``MODEL.ANCHOR_GENERATOR.SIZES``: one size per level, the config's sizes from the
  smallest: without P2, P3 takes P2's size (32 at stride 8, RetinaNet's choice), so the
  smallest objects keep an anchor that fits them.
"""

from dataclasses import dataclass
from typing import Dict, Tuple

from atto_detectron.modeling.attonet_spec import STAGE_NAMES

__all__ = ["NECK_LEVEL_CHOICES", "NECK_WIDTH_FACTORS", "NeckGenome", "apply_neck", "neck_of"]

# The FPN input levels the search may choose (the prototype's is the first).
NECK_LEVEL_CHOICES: Tuple[Tuple[str, ...], ...] = (STAGE_NAMES, STAGE_NAMES[1:])
# FPN widths the search may choose, as fractions of the prototype's (96 -> 32..128),
# rounded to multiples of 32: the FPN's GroupNorm ("GN") has 32 groups.
NECK_WIDTH_FACTORS: Tuple[float, ...] = (1 / 3, 2 / 3, 1.0, 4 / 3)
WIDTH_MULTIPLE = 32


@dataclass(frozen=True)
class NeckGenome:
    """
    Attributes:
        out_channels: ``MODEL.FPN.OUT_CHANNELS``.
        in_features: ``MODEL.FPN.IN_FEATURES``, one of :data:`NECK_LEVEL_CHOICES`.
    """

    out_channels: int
    in_features: Tuple[str, ...]

    def __post_init__(self):
        object.__setattr__(self, "in_features", tuple(self.in_features))
        if self.out_channels < 1:
            raise ValueError(f"FPN width must be positive, got {self.out_channels}")
        if self.in_features not in NECK_LEVEL_CHOICES:
            raise ValueError(
                f"FPN in_features {list(self.in_features)} are not one of "
                f"{[list(c) for c in NECK_LEVEL_CHOICES]}"
            )

    def to_dict(self) -> Dict:
        return {"out_channels": self.out_channels, "in_features": list(self.in_features)}

    @classmethod
    def from_dict(cls, data: Dict) -> "NeckGenome":
        return cls(int(data["out_channels"]), tuple(data["in_features"]))

    def describe(self) -> str:
        """E.g. "FPN 96 on res2-res5"."""
        return f"FPN {self.out_channels} on {self.in_features[0]}-{self.in_features[-1]}"

    def width_choices(self):
        """The FPN widths the search explores around this (prototype's) neck."""
        m = WIDTH_MULTIPLE
        widths = {max(m, int(round(self.out_channels * f / m)) * m) for f in NECK_WIDTH_FACTORS}
        return tuple(sorted(widths | {self.out_channels}))


def neck_of(cfg) -> NeckGenome:
    """The neck of a Detectron2 config of an FPN detector."""
    return NeckGenome(int(cfg.MODEL.FPN.OUT_CHANNELS), tuple(cfg.MODEL.FPN.IN_FEATURES))


def apply_neck(cfg, neck: NeckGenome):
    """
    ``cfg`` (unchanged) with ``neck`` and the keys that follow it (module docstring).

    Raises:
        ValueError: when ``cfg`` is not a 4-level FPN config with P6 (LastLevelMaxPool),
            which the rewrite of the RPN, ROI and anchor keys assumes.
    """
    base = neck_of(cfg)
    levels = [f"p{k}" for k in range(2, 7)]
    if base.in_features != STAGE_NAMES or list(cfg.MODEL.RPN.IN_FEATURES) != levels:
        raise ValueError(
            f"the neck search starts from an FPN on {list(STAGE_NAMES)} with RPN levels "
            f"{levels}; the config has MODEL.FPN.IN_FEATURES {list(base.in_features)} and "
            f"MODEL.RPN.IN_FEATURES {list(cfg.MODEL.RPN.IN_FEATURES)}"
        )
    sizes = [list(s) for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES]
    if len(sizes) != len(levels):
        raise ValueError(
            f"MODEL.ANCHOR_GENERATOR.SIZES needs one entry per RPN level {levels} for the "
            f"neck search; got {sizes}"
        )
    first = int(neck.in_features[0][len("res") :])
    rpn_levels = [f"p{k}" for k in range(first, 7)]
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.FPN.OUT_CHANNELS = neck.out_channels
    cfg.MODEL.FPN.IN_FEATURES = list(neck.in_features)
    cfg.MODEL.RPN.IN_FEATURES = rpn_levels
    cfg.MODEL.ROI_HEADS.IN_FEATURES = rpn_levels[:-1]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = sizes[: len(rpn_levels)]
    cfg.freeze()
    return cfg

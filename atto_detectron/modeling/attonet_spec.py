"""The AttoNet family of Table 1 (Wong et al., 2019) as data.

Every AttoNet follows one human-specified prototype: a 7x7 stem, 16 residual modules in
four stages (``res2``..``res5``, output strides 4/8/16/32, 3/4/6/3 modules), global
average pooling and a fully connected classifier. The machine-designed part is each
module's cell ``[1x1, c] [3x3xM, g] [1x1, p] [1x1, o]``:

* ``c``: width of the 1x1 pointwise compression,
* ``M``: channel multiplier of the 3x3 depthwise conv (``groups = c``),
* ``g = M * c``: width of the 3x3 conv's output,
* ``p``: width of the 1x1 mixing conv,
* ``o``: output width (1x1 decompression),

plus the module's stride and shortcut kind (identity, or a 1x1 projection where the
module downsamples or changes the width). Nothing else differs between variants: models
are built from these tables only.
"""

import json
import os
from dataclasses import asdict, dataclass
from typing import Dict, Sequence, Tuple, Union

import yaml

__all__ = [
    "ATTONET_VARIANTS",
    "STAGE_NAMES",
    "SPEC_FILE_EXTENSIONS",
    "AttoModuleSpec",
    "AttoNetSpec",
    "get_attonet_spec",
    "load_attonet_spec",
    "save_attonet_spec",
]

STAGE_NAMES = ("res2", "res3", "res4", "res5")
# Modules 1-3, 4-7, 8-13 and 14-16 of the prototype.
PROTOTYPE_STAGE_DEPTHS = (3, 4, 6, 3)

IDENTITY = "identity"
PROJECTION = "projection"
_SHORTCUTS = (IDENTITY, PROJECTION)


@dataclass(frozen=True)
class AttoModuleSpec:
    """One residual module's cell: ``[1x1, c] [3x3xM, g] [1x1, p] [1x1, o]``."""

    compression: int  # c
    multiplier: int  # M
    depthwise: int  # g = M * c
    mixing: int  # p
    out_channels: int  # o
    stride: int  # 2 where the module downsamples (its 3x3 conv and its shortcut)
    shortcut: str  # "identity" or "projection"


@dataclass(frozen=True)
class AttoNetSpec:
    """A whole AttoNet: stem width and the modules of stages res2..res5."""

    name: str
    stem_channels: int
    stages: Tuple[Tuple[AttoModuleSpec, ...], ...]

    def __post_init__(self):
        _validate(self)

    @property
    def modules(self) -> Tuple[AttoModuleSpec, ...]:
        """The modules in order (module 1 first)."""
        return tuple(m for stage in self.stages for m in stage)

    @property
    def out_channels(self) -> int:
        return self.stages[-1][-1].out_channels

    def to_dict(self) -> Dict:
        """A plain-data form (for yaml/json spec files); :meth:`from_dict` inverts it."""
        return {
            "name": self.name,
            "stem_channels": self.stem_channels,
            "stages": {
                stage_name: [asdict(m) for m in stage]
                for stage_name, stage in zip(STAGE_NAMES, self.stages)
            },
        }

    @classmethod
    def from_dict(cls, data: Dict) -> "AttoNetSpec":
        try:
            stages = tuple(
                tuple(AttoModuleSpec(**m) for m in data["stages"][stage_name])
                for stage_name in STAGE_NAMES
            )
            return cls(name=data["name"], stem_channels=data["stem_channels"], stages=stages)
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"Malformed AttoNet spec ({e!r}): expected keys 'name', 'stem_channels' and "
                f"'stages' with {list(STAGE_NAMES)}, each a list of modules with fields "
                f"{list(AttoModuleSpec.__dataclass_fields__)}."
            ) from e


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate(spec: AttoNetSpec) -> None:
    _check(
        len(spec.stages) == len(STAGE_NAMES),
        f"{spec.name}: expected {len(STAGE_NAMES)} stages ({', '.join(STAGE_NAMES)}), "
        f"got {len(spec.stages)}",
    )
    _check(spec.stem_channels > 0, f"{spec.name}: stem_channels={spec.stem_channels!r}")
    in_channels = spec.stem_channels
    for stage_name, stage in zip(STAGE_NAMES, spec.stages):
        _check(len(stage) > 0, f"{spec.name}: stage {stage_name} has no modules")
        for i, m in enumerate(stage):
            where = f"{spec.name} {stage_name}.{i}"
            for field in ("compression", "multiplier", "depthwise", "mixing", "out_channels"):
                value = getattr(m, field)
                _check(
                    isinstance(value, int) and value > 0,
                    f"{where}: {field} must be a positive integer, got {value!r}",
                )
            _check(
                m.depthwise == m.multiplier * m.compression,
                f"{where}: the 3x3 conv is depthwise with multiplier M, so g must be M * c; "
                f"got g={m.depthwise}, M={m.multiplier}, c={m.compression}",
            )
            # The prototype downsamples in the first module of res3, res4 and res5 only,
            # which keeps the stage strides at 4, 8, 16, 32.
            expected_stride = 2 if i == 0 and stage_name != STAGE_NAMES[0] else 1
            _check(
                m.stride == expected_stride,
                f"{where}: stride must be {expected_stride} in the AttoNet prototype, "
                f"got {m.stride!r}",
            )
            _check(
                m.shortcut in _SHORTCUTS,
                f"{where}: shortcut must be one of {_SHORTCUTS}, got {m.shortcut!r}",
            )
            if m.shortcut == IDENTITY:
                _check(
                    m.stride == 1 and in_channels == m.out_channels,
                    f"{where}: an identity shortcut needs stride 1 and equal input/output "
                    f"widths; got stride {m.stride}, {in_channels} -> {m.out_channels}. "
                    f"Use shortcut '{PROJECTION}'.",
                )
            in_channels = m.out_channels


def _spec(name: str, stem_channels: int, rows: Sequence[Tuple]) -> AttoNetSpec:
    modules = [AttoModuleSpec(*row) for row in rows]
    assert len(modules) == sum(PROTOTYPE_STAGE_DEPTHS), name
    stages, start = [], 0
    for depth in PROTOTYPE_STAGE_DEPTHS:
        stages.append(tuple(modules[start : start + depth]))
        start += depth
    return AttoNetSpec(name=name, stem_channels=stem_channels, stages=tuple(stages))


P, I = PROJECTION, IDENTITY  # noqa: E741 (one letter keeps the table's rows aligned)
# fmt: off
# Table 1 of the paper. Each row is one module: c, M, g, p, o, stride, shortcut.
ATTONET_A = _spec("AttoNet-A", stem_channels=8, rows=[
    (8,   4, 32,  16,  176, 1, P),  # res2, 56x56
    (16,  4, 64,  16,  176, 1, I),
    (16,  4, 64,  16,  176, 1, I),
    (40,  4, 160, 40,  400, 2, P),  # res3, 28x28
    (32,  4, 128, 24,  400, 1, I),
    (40,  4, 160, 32,  400, 1, I),
    (40,  4, 160, 32,  400, 1, I),
    (80,  4, 320, 64,  808, 2, P),  # res4, 14x14
    (72,  4, 288, 72,  808, 1, I),
    (80,  4, 320, 72,  808, 1, I),
    (72,  4, 288, 72,  808, 1, I),
    (72,  4, 288, 64,  808, 1, I),
    (56,  4, 224, 56,  808, 1, I),
    (160, 4, 640, 128, 952, 2, P),  # res5, 7x7
    (120, 4, 480, 88,  952, 1, I),
    (112, 4, 448, 88,  952, 1, I),
])
ATTONET_B = _spec("AttoNet-B", stem_channels=8, rows=[
    (8,   4, 32,  16,  168, 1, P),  # res2
    (16,  4, 64,  8,   168, 1, I),
    (16,  4, 64,  16,  168, 1, I),
    (32,  4, 128, 24,  368, 2, P),  # res3
    (16,  4, 64,  24,  368, 1, I),
    (24,  4, 96,  24,  368, 1, I),
    (24,  4, 96,  32,  368, 1, I),
    (64,  4, 256, 48,  728, 2, P),  # res4
    (40,  4, 160, 40,  728, 1, I),
    (48,  4, 192, 48,  728, 1, I),
    (56,  4, 224, 48,  728, 1, I),
    (48,  4, 192, 40,  728, 1, I),
    (32,  4, 128, 32,  728, 1, I),
    (112, 4, 448, 96,  736, 2, P),  # res5
    (72,  4, 288, 48,  736, 1, I),
    (72,  4, 288, 56,  736, 1, I),
])
ATTONET_C = _spec("AttoNet-C", stem_channels=6, rows=[
    (7,  2, 14,  8,  139, 1, P),  # res2
    (5,  2, 10,  5,  139, 1, I),
    (7,  2, 14,  6,  139, 1, I),
    (19, 2, 38,  14, 328, 2, P),  # res3
    (13, 2, 26,  9,  328, 1, I),
    (19, 2, 38,  8,  328, 1, I),
    (20, 2, 40,  12, 328, 1, I),
    (39, 2, 78,  24, 628, 2, P),  # res4
    (29, 2, 58,  28, 628, 1, I),
    (37, 2, 74,  26, 628, 1, I),
    (37, 2, 74,  32, 628, 1, I),
    (37, 2, 74,  27, 628, 1, I),
    (17, 2, 34,  24, 628, 1, I),
    (67, 2, 134, 52, 527, 2, P),  # res5
    (46, 2, 92,  30, 527, 1, I),
    (49, 2, 98,  31, 527, 1, I),
])
# Module 3's mixing width reads "65" in the extracted text; 6 fits the neighbouring
# cells and the paper's 0.32M total (65 would give 0.33M).
ATTONET_D = _spec("AttoNet-D", stem_channels=3, rows=[
    (7,  4, 28, 8, 112, 1, P),  # res2
    (5,  4, 20, 5, 112, 1, I),
    (7,  4, 28, 6, 112, 1, I),
    (8,  4, 32, 8, 264, 2, P),  # res3
    (8,  4, 32, 8, 264, 1, I),
    (8,  4, 32, 8, 264, 1, I),
    (8,  4, 32, 8, 264, 1, I),
    (8,  4, 32, 8, 467, 2, P),  # res4
    (8,  4, 32, 8, 467, 1, I),
    (8,  4, 32, 8, 467, 1, I),
    (8,  4, 32, 8, 467, 1, I),
    (8,  4, 32, 8, 467, 1, I),
    (8,  4, 32, 8, 467, 1, I),
    (16, 4, 64, 8, 140, 2, P),  # res5
    (8,  4, 32, 8, 140, 1, I),
    (8,  4, 32, 8, 140, 1, I),
])
# fmt: on
del P, I

ATTONET_VARIANTS: Dict[str, AttoNetSpec] = {
    "A": ATTONET_A,
    "B": ATTONET_B,
    "C": ATTONET_C,
    "D": ATTONET_D,
}


SPEC_FILE_EXTENSIONS = (".yaml", ".yml", ".json")


def save_attonet_spec(spec: AttoNetSpec, path: str) -> str:
    """
    Writes ``spec`` as a spec file (yaml, or json when ``path`` ends in ".json") in the
    format of :meth:`AttoNetSpec.to_dict`; :func:`load_attonet_spec` reads it back.

    Returns:
        str: ``path``.
    """
    _check(
        path.lower().endswith(SPEC_FILE_EXTENSIONS),
        f"{path}: an AttoNet spec file must end in one of {SPEC_FILE_EXTENSIONS}",
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        if path.lower().endswith(".json"):
            json.dump(spec.to_dict(), f, indent=2)
        else:
            yaml.safe_dump(spec.to_dict(), f, sort_keys=False)
    return path


def load_attonet_spec(path: str) -> AttoNetSpec:
    """
    Reads a spec file written by :func:`save_attonet_spec` (or by hand, in that format).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: naming ``path``, when the file is not a valid AttoNet spec.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"AttoNet spec file {path!r} does not exist (MODEL.ATTONET.SPEC or the variant "
            f"argument names it); give a yaml/json spec file or a variant 'A'..'D'."
        )
    try:
        with open(path) as f:
            data = yaml.safe_load(f)  # json is yaml too
        return AttoNetSpec.from_dict(data)
    except (yaml.YAMLError, ValueError) as e:
        raise ValueError(f"{path}: not a valid AttoNet spec file: {e}") from e


def get_attonet_spec(variant: Union[str, AttoNetSpec]) -> AttoNetSpec:
    """
    Args:
        variant: "A".."D" or "AttoNet-A".."AttoNet-D" (case-insensitive; "attonet_a"
            works too), the path of a spec file (".yaml", ".yml", ".json"; see
            :func:`load_attonet_spec`), or an :class:`AttoNetSpec`, returned as it is.

    Raises:
        ValueError: for any other name, listing the valid ones.
    """
    if isinstance(variant, AttoNetSpec):
        return variant
    if isinstance(variant, str) and variant.strip().lower().endswith(SPEC_FILE_EXTENSIONS):
        return load_attonet_spec(variant.strip())
    key = str(variant).strip().upper().replace("_", "-")
    if key.startswith("ATTONET-"):
        key = key[len("ATTONET-") :]
    if key not in ATTONET_VARIANTS:
        valid = ", ".join(f"'{k}'" for k in ATTONET_VARIANTS)
        raise ValueError(
            f"Unknown AttoNet variant {variant!r}. Valid variants: {valid} "
            f"(or 'AttoNet-A'..'AttoNet-D'; case-insensitive), or the path of a spec file "
            f"({', '.join(SPEC_FILE_EXTENSIONS)})."
        )
    return ATTONET_VARIANTS[key]

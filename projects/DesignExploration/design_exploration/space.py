"""The search space: the human-specified prototype and the module cells the machine explores.

The prototype (Fig. 1 of the paper) fixes everything at the network level: the 7x7 stem,
the number of modules per stage (3/4/6/3), where the network downsamples, pooling and the
classifier. What is left open is each module's cell (Fig. 2):

* the stem width ``S`` and one output width ``o`` per stage (the residual stream; every
  module of a stage writes into it, as in Table 1);
* per module: the compression width ``c``, the depthwise multiplier ``M`` (one of
  :data:`MULTIPLIER_CHOICES`; ``g = M * c``), the mixing width ``p``;
* per module that neither downsamples nor changes the width: the shortcut type, identity
  or a 1x1 projection. The first module of every stage always projects (it downsamples,
  or, in res2, changes the stem's width).

A search may also open what the prototype fixes, within its form (a stem, four stages at
strides 4 to 32, each downsampling in its first module):

* the number of modules per stage (``depths``, at least 1): where the strides fall among
  the modules, i.e. how much of the network runs at each resolution;
* for a detector, its neck (:class:`~design_exploration.neck.NeckGenome`): the FPN's
  width and whether it uses the stride-4 stage.

:class:`CellGenome` holds one point of this space and converts it to and from an
:class:`~atto_detectron.modeling.AttoNetSpec`.
"""

from dataclasses import dataclass, replace
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from atto_detectron.modeling.attonet_spec import (
    IDENTITY,
    PROJECTION,
    PROTOTYPE_STAGE_DEPTHS,
    STAGE_NAMES,
    AttoModuleSpec,
    AttoNetSpec,
    get_attonet_spec,
)

from .neck import NeckGenome

__all__ = [
    "MULTIPLIER_CHOICES",
    "PROTOTYPE_NAMES",
    "CellGenome",
    "genome_distance",
    "uniform_prototype",
    "get_prototype",
]

# Depthwise channel multipliers the explorer may pick (Table 1 uses 2 and 4).
MULTIPLIER_CHOICES = (1, 2, 4)


@dataclass(frozen=True)
class CellGenome:
    """
    The explored part of an AttoNet, for a prototype with ``depths`` modules per stage.

    Attributes:
        depths: modules per stage (fixed by the prototype).
        stem: stem width ``S``.
        widths: output width ``o`` of each stage.
        compression, multiplier, mixing: ``c``, ``M``, ``p`` of each module, in order.
        projection: whether each module has a 1x1 projection shortcut; always True for
            the first module of a stage.
        neck: the detector's FPN (None: the config's; a classifier has none).
    """

    depths: Tuple[int, ...]
    stem: int
    widths: Tuple[int, ...]
    compression: Tuple[int, ...]
    multiplier: Tuple[int, ...]
    mixing: Tuple[int, ...]
    projection: Tuple[bool, ...]
    neck: Optional[NeckGenome] = None

    def __post_init__(self):
        if min(self.depths) < 1:
            raise ValueError(f"every stage needs at least one module, got depths {self.depths}")
        n = sum(self.depths)
        for field, length in (
            ("widths", len(self.depths)),
            ("compression", n),
            ("multiplier", n),
            ("mixing", n),
            ("projection", n),
        ):
            value = getattr(self, field)
            if len(value) != length:
                raise ValueError(f"CellGenome.{field} needs {length} values, got {len(value)}")
        for m in self.multiplier:
            if m not in MULTIPLIER_CHOICES:
                raise ValueError(f"multiplier {m} is not one of {MULTIPLIER_CHOICES}")
        for i in self.first_modules:
            if not self.projection[i]:
                raise ValueError(f"module {i + 1} starts a stage and must have a projection")

    @property
    def num_modules(self) -> int:
        return sum(self.depths)

    @property
    def first_modules(self) -> Tuple[int, ...]:
        """Indices of the modules that start a stage (always a projection shortcut)."""
        return tuple(int(i) for i in np.cumsum((0,) + tuple(self.depths[:-1])))

    # ------------------------------------------------------------------ integer genes
    # The widths as one vector, the form the generator works on:
    # [S, o_1..o_4, c_1..c_n, p_1..p_n].

    def integer_genes(self) -> np.ndarray:
        return np.array((self.stem,) + self.widths + self.compression + self.mixing, dtype=np.int64)

    def with_integer_genes(self, genes: Sequence[int]) -> "CellGenome":
        genes = [int(g) for g in genes]
        s, n = len(self.depths), self.num_modules
        if len(genes) != 1 + s + 2 * n:
            raise ValueError(f"expected {1 + s + 2 * n} integer genes, got {len(genes)}")
        if min(genes) < 1:
            raise ValueError(f"every width must be at least 1, got {genes}")
        return replace(
            self,
            stem=genes[0],
            widths=tuple(genes[1 : 1 + s]),
            compression=tuple(genes[1 + s : 1 + s + n]),
            mixing=tuple(genes[1 + s + n :]),
        )

    def scaled(self, factor: float) -> "CellGenome":
        """Every width times ``factor``, rounded, at least 1 (multipliers unchanged)."""
        genes = np.maximum(1, np.round(self.integer_genes() * factor)).astype(np.int64)
        return self.with_integer_genes(genes)

    # ------------------------------------------------------------------ depths

    def _stage_slices(self):
        starts = self.first_modules
        return [slice(s, s + d) for s, d in zip(starts, self.depths)]

    def _per_module(self, pick) -> dict:
        """compression/multiplier/mixing/projection rebuilt from ``pick(stage, slice)``."""
        fields = ("compression", "multiplier", "mixing", "projection")
        out = {f: [] for f in fields}
        for stage, part in enumerate(self._stage_slices()):
            for f in fields:
                out[f].extend(pick(stage, getattr(self, f)[part]))
        return {f: tuple(v) for f, v in out.items()}

    def truncated(self, depths: Sequence[int]) -> "CellGenome":
        """The first ``depths[s]`` modules of each stage s (at most the genome's depths)."""
        depths = tuple(int(d) for d in depths)
        if len(depths) != len(self.depths) or any(
            not 1 <= d <= have for d, have in zip(depths, self.depths)
        ):
            raise ValueError(f"cannot truncate depths {self.depths} to {depths}")
        return replace(
            self, depths=depths, **self._per_module(lambda stage, values: values[: depths[stage]])
        )

    def padded(self, depths: Sequence[int]) -> "CellGenome":
        """
        Each stage s extended to ``depths[s]`` modules (at least the genome's) by copies of
        its last module's cell with an identity shortcut.
        """
        depths = tuple(int(d) for d in depths)
        if len(depths) != len(self.depths) or any(d < have for d, have in zip(depths, self.depths)):
            raise ValueError(f"cannot pad depths {self.depths} to {depths}")

        def pick(stage, values):
            extra = depths[stage] - len(values)
            last = False if isinstance(values[-1], bool) else values[-1]
            return values + (last,) * extra

        return replace(self, depths=depths, **self._per_module(pick))

    # ------------------------------------------------------------------ specs

    def to_spec(self, name: str) -> AttoNetSpec:
        """The AttoNet of this genome (stride 2 in the first module of res3..res5)."""
        stages, module = [], 0
        for stage_index, (depth, width) in enumerate(zip(self.depths, self.widths)):
            blocks = []
            for i in range(depth):
                c, m, p = self.compression[module], self.multiplier[module], self.mixing[module]
                blocks.append(
                    AttoModuleSpec(
                        compression=c,
                        multiplier=m,
                        depthwise=m * c,
                        mixing=p,
                        out_channels=width,
                        stride=2 if i == 0 and stage_index > 0 else 1,
                        shortcut=PROJECTION if self.projection[module] else IDENTITY,
                    )
                )
                module += 1
            stages.append(tuple(blocks))
        return AttoNetSpec(name=name, stem_channels=self.stem, stages=tuple(stages))

    @classmethod
    def from_spec(cls, spec: AttoNetSpec, neck: Optional[NeckGenome] = None) -> "CellGenome":
        """
        Args:
            spec: the AttoNet.
            neck: its detector's neck, if the search explores it.

        Raises:
            ValueError: when the spec is outside the search space (a stage whose modules
                differ in output width, or a multiplier not in MULTIPLIER_CHOICES).
        """
        widths = []
        for stage_name, stage in zip(STAGE_NAMES, spec.stages):
            stage_widths = {m.out_channels for m in stage}
            if len(stage_widths) != 1:
                raise ValueError(
                    f"{spec.name}: the modules of {stage_name} have output widths "
                    f"{sorted(stage_widths)}; the explorer keeps one width per stage (as "
                    f"Table 1 does). Give a prototype with equal widths within each stage."
                )
            widths.append(stage[0].out_channels)
        modules = spec.modules
        bad = sorted({m.multiplier for m in modules} - set(MULTIPLIER_CHOICES))
        if bad:
            raise ValueError(
                f"{spec.name}: multipliers {bad} are outside the explored choices "
                f"{MULTIPLIER_CHOICES}."
            )
        return cls(
            depths=tuple(len(stage) for stage in spec.stages),
            stem=spec.stem_channels,
            widths=tuple(widths),
            compression=tuple(m.compression for m in modules),
            multiplier=tuple(m.multiplier for m in modules),
            mixing=tuple(m.mixing for m in modules),
            projection=tuple(m.shortcut == PROJECTION for m in modules),
            neck=neck,
        )


def genome_distance(a: CellGenome, b: CellGenome) -> float:
    """
    How far apart two genomes are, for choosing the parent a candidate inherits from: the
    L1 distance of their log2 widths over the modules both have, plus 1 per module that
    only one has, plus the neck's log2 width ratio and 1 if its levels differ.
    """
    shared = tuple(min(x, y) for x, y in zip(a.depths, b.depths))
    genes_a, genes_b = a.truncated(shared).integer_genes(), b.truncated(shared).integer_genes()
    distance = float(np.abs(np.log2(genes_a) - np.log2(genes_b)).sum())
    distance += sum(abs(x - y) for x, y in zip(a.depths, b.depths))
    if a.neck is not None and b.neck is not None:
        distance += abs(np.log2(a.neck.out_channels / b.neck.out_channels))
        distance += float(a.neck.in_features != b.neck.in_features)
    return distance


def uniform_prototype(
    base_width: int = 32,
    bottleneck_ratio: int = 4,
    multiplier: int = 2,
    stem_channels: int = 8,
    depths: Sequence[int] = PROTOTYPE_STAGE_DEPTHS,
    name: str = "",
) -> AttoNetSpec:
    """
    The prototype of Fig. 1 with the same cell in every module of a stage, sized as a
    person would size it from ResNet's rules: the width doubles at each stage
    (``base_width * 2**k``), the compression and mixing convs are ``1/bottleneck_ratio``
    of it, the 3x3 depthwise conv has ``multiplier`` outputs per input.

    With the defaults (widths 32/64/128/256, c = p = 8/16/32/64, M = 2, stem 8) it has
    246,738 parameters as a 10-class classifier, AttoNet-D 314,416.
    """
    if base_width < bottleneck_ratio:
        raise ValueError(
            f"base_width {base_width} is below the bottleneck ratio {bottleneck_ratio}: the "
            f"compression conv of the first stage would have no channels"
        )
    n = sum(depths)
    widths = tuple(base_width * 2**k for k in range(len(depths)))
    cells = [w // bottleneck_ratio for w, d in zip(widths, depths) for _ in range(d)]
    first = set(np.cumsum((0,) + tuple(depths[:-1])).tolist())
    genome = CellGenome(
        depths=tuple(depths),
        stem=stem_channels,
        widths=widths,
        compression=tuple(cells),
        multiplier=(multiplier,) * n,
        mixing=tuple(cells),
        projection=tuple(i in first for i in range(n)),
    )
    return genome.to_spec(name or f"uniform-{base_width}")


PROTOTYPE_NAMES = ("uniform", "A", "B", "C", "D")


def get_prototype(prototype: Union[str, AttoNetSpec], base_width: int = 32) -> AttoNetSpec:
    """
    Args:
        prototype: "uniform" (:func:`uniform_prototype` with ``base_width``), an AttoNet of
            Table 1 ("A".."D"), the path of a spec file, or an AttoNetSpec.
        base_width: see :func:`uniform_prototype`.

    Returns:
        AttoNetSpec: the starting point, checked to lie in the search space.
    """
    if isinstance(prototype, str) and prototype.strip().lower() == "uniform":
        spec = uniform_prototype(base_width)
    else:
        spec = get_attonet_spec(prototype)
    CellGenome.from_spec(spec)  # raises when it is outside the search space
    return spec

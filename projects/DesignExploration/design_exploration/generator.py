"""A generator of module cells: a parametrised distribution over the search space.

:class:`CellGenerator` is the explorer's G_k. It is a product of independent
distributions, one per gene of a :class:`~design_exploration.space.CellGenome`:

* the widths (stem, stage widths, every module's ``c`` and ``p``): ``log2(width_i) =
  mean_i + scale_sigma * z + sigma_i * z_i`` with standard normal ``z`` and ``z_i``,
  rounded to an integer and kept within ``[1, upper_i]`` (``upper_i`` is ``max_growth``
  times the prototype's width). ``z`` is shared by all widths of a candidate: it makes the
  whole network wider or narrower, the move between members of a family such as
  AttoNet-A..D; the ``z_i`` reshape it cell by cell;
* each module's depthwise multiplier: a categorical distribution over
  :data:`~design_exploration.space.MULTIPLIER_CHOICES`;
* each module's shortcut (where it may be either): a Bernoulli probability of a 1x1
  projection instead of the identity;
* when the settings open them (``depth_change``, ``search_neck``): each stage's number of
  modules, the FPN's width and its levels, each a categorical distribution. The cells are
  then distributions over *module slots*: the prototype's stages padded to their largest
  depth (extra slots copy the stage's last cell, with an identity shortcut); a candidate
  with fewer modules uses the first slots of each stage.

G_0 is centred on the human prototype (its depths and neck have probability
``initial_keep``). :meth:`CellGenerator.updated` builds the next
generator from the best candidates found so far (the elite), as the cross-entropy method
does: the means move a fraction ``mean_rate`` of the way to the elite's mean log2 widths;
the spreads and probabilities move a smaller fraction ``spread_rate`` towards the elite's
(the standard deviation of each width, and of their average log2 width for the common
scale; their choice frequencies), so that the generator does not narrow down faster than
a few noisy evaluations warrant. Floors on spreads and probabilities keep every choice
possible. A slot, depth or neck choice that no elite candidate has keeps its distribution.
"""

from dataclasses import asdict, dataclass, replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .neck import NECK_LEVEL_CHOICES, NeckGenome
from .space import MULTIPLIER_CHOICES, CellGenome

__all__ = ["GeneratorSettings", "CellGenerator"]


@dataclass(frozen=True)
class GeneratorSettings:
    """
    Attributes:
        initial_scale_sigma: G_0's spread of the common log2 scale of all widths (0.5:
            a network 0.71x..1.41x as wide as the prototype for one standard deviation).
        initial_sigma: G_0's spread of each log2 width on its own (0.25: -16%..+19%).
        min_sigma: floor of all spreads.
        initial_keep: G_0's probability of the prototype's multiplier in each module.
        initial_projection: G_0's probability of a projection where the prototype has an
            identity shortcut.
        mean_rate: how far each update moves the means towards the elite's (0..1].
        spread_rate: how far it moves the spreads and probabilities (0..1].
        prob_floor: floor of every categorical and Bernoulli probability.
        max_growth: widths stay at most this many times the prototype's.
        depth_change: each stage may have up to this many modules more or fewer than the
            prototype's (at least 1); 0 keeps the prototype's depths.
        search_neck: explore the detector's FPN width and levels
            (:mod:`~design_exploration.neck`); needs a prototype with a neck.
    """

    initial_scale_sigma: float = 0.5
    initial_sigma: float = 0.25
    min_sigma: float = 0.1
    initial_keep: float = 0.7
    initial_projection: float = 0.05
    mean_rate: float = 0.8
    spread_rate: float = 0.3
    prob_floor: float = 0.05
    max_growth: float = 2.0
    depth_change: int = 0
    search_neck: bool = False

    def __post_init__(self):
        for name in ("mean_rate", "spread_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]; got {getattr(self, name)}")
        if not 0 <= self.prob_floor < 0.5:
            raise ValueError(f"prob_floor must be in [0, 0.5); got {self.prob_floor}")
        if self.max_growth < 1:
            raise ValueError(f"max_growth must be at least 1; got {self.max_growth}")
        if not 0 < self.min_sigma <= min(self.initial_sigma, self.initial_scale_sigma):
            raise ValueError("need 0 < min_sigma <= initial_sigma, initial_scale_sigma")
        if self.depth_change < 0:
            raise ValueError(f"depth_change must be at least 0; got {self.depth_change}")

    def to_dict(self) -> Dict:
        return asdict(self)


def _floor_probabilities(probs: np.ndarray, floor: float) -> np.ndarray:
    probs = np.maximum(probs, floor)
    return probs / probs.sum(axis=-1, keepdims=True)


def _centred(choices: Sequence, keep, settings: GeneratorSettings) -> np.ndarray:
    """Probability ``initial_keep`` on ``keep``, the rest shared by the other choices."""
    if len(choices) == 1:
        return np.ones(1)
    probs = np.full(len(choices), (1 - settings.initial_keep) / (len(choices) - 1))
    probs[list(choices).index(keep)] = settings.initial_keep
    return _floor_probabilities(probs, settings.prob_floor)


def _choose(rng: np.random.Generator, choices: Sequence, probs: np.ndarray):
    """One of ``choices``; draws nothing from ``rng`` when there is only one."""
    if len(choices) == 1:
        return choices[0]
    return choices[rng.choice(len(choices), p=probs)]


def _moved(probs, choices, chosen, settings: GeneratorSettings) -> np.ndarray:
    """``probs`` moved ``spread_rate`` towards the frequencies of ``chosen``."""
    if len(choices) == 1:
        return np.asarray(probs, dtype=np.float64)
    frequencies = np.array([sum(c == x for c in chosen) for x in choices]) / len(chosen)
    b = settings.spread_rate
    return _floor_probabilities((1 - b) * np.asarray(probs) + b * frequencies, settings.prob_floor)


@dataclass(frozen=True)
class StructureChoices:
    """
    The categorical part of a generator: depths and neck (fixed ones have one choice).

    Attributes:
        depths: per stage, the numbers of modules it may have.
        depth_probs: per stage, their probabilities.
        neck_widths, neck_width_probs: FPN widths (empty without a neck).
        neck_levels, neck_level_probs: FPN input levels (empty without a neck).
    """

    depths: Tuple[Tuple[int, ...], ...]
    depth_probs: Tuple[np.ndarray, ...]
    neck_widths: Tuple[int, ...] = ()
    neck_width_probs: Optional[np.ndarray] = None
    neck_levels: Tuple[Tuple[str, ...], ...] = ()
    neck_level_probs: Optional[np.ndarray] = None

    @property
    def max_depths(self) -> Tuple[int, ...]:
        return tuple(max(d) for d in self.depths)

    @classmethod
    def around(cls, prototype: CellGenome, settings: GeneratorSettings) -> "StructureChoices":
        k = settings.depth_change
        depths = tuple(tuple(range(max(1, d - k), d + k + 1)) for d in prototype.depths)
        depth_probs = tuple(_centred(c, d, settings) for c, d in zip(depths, prototype.depths))
        neck = prototype.neck
        if neck is None:
            if settings.search_neck:
                raise ValueError(
                    "--search-neck varies a detector's FPN on res2..res5 or res3..res5: "
                    "use --task detection with such a config (MODEL.FPN.IN_FEATURES)"
                )
            return cls(depths, depth_probs)
        widths = neck.width_choices() if settings.search_neck else (neck.out_channels,)
        levels = NECK_LEVEL_CHOICES if settings.search_neck else (neck.in_features,)
        return cls(
            depths,
            depth_probs,
            widths,
            _centred(widths, neck.out_channels, settings),
            levels,
            _centred(levels, neck.in_features, settings),
        )

    def sample(self, rng: np.random.Generator):
        """(depths, neck or None); draws from ``rng`` only for open choices."""
        depths = tuple(_choose(rng, c, p) for c, p in zip(self.depths, self.depth_probs))
        if not self.neck_widths:
            return depths, None
        width = _choose(rng, self.neck_widths, self.neck_width_probs)
        levels = _choose(rng, self.neck_levels, self.neck_level_probs)
        return depths, NeckGenome(int(width), levels)

    def most_likely(self):
        depths = tuple(c[int(np.argmax(p))] for c, p in zip(self.depths, self.depth_probs))
        if not self.neck_widths:
            return depths, None
        return depths, NeckGenome(
            int(self.neck_widths[int(np.argmax(self.neck_width_probs))]),
            self.neck_levels[int(np.argmax(self.neck_level_probs))],
        )

    def updated(self, elite: Sequence[CellGenome], settings: GeneratorSettings):
        depth_probs = tuple(
            _moved(p, c, [g.depths[s] for g in elite], settings)
            for s, (c, p) in enumerate(zip(self.depths, self.depth_probs))
        )
        if not self.neck_widths:
            return StructureChoices(self.depths, depth_probs)
        return StructureChoices(
            self.depths,
            depth_probs,
            self.neck_widths,
            _moved(
                self.neck_width_probs,
                self.neck_widths,
                [g.neck.out_channels for g in elite],
                settings,
            ),
            self.neck_levels,
            _moved(
                self.neck_level_probs,
                self.neck_levels,
                [g.neck.in_features for g in elite],
                settings,
            ),
        )

    def to_dict(self) -> Dict:
        data = {
            "depth_choices": [list(c) for c in self.depths],
            "depth_probs": [p.tolist() for p in self.depth_probs],
        }
        if self.neck_widths:
            data.update(
                neck_widths=list(self.neck_widths),
                neck_width_probs=self.neck_width_probs.tolist(),
                neck_levels=[list(c) for c in self.neck_levels],
                neck_level_probs=self.neck_level_probs.tolist(),
            )
        return data

    @classmethod
    def from_dict(cls, data: Dict, prototype: CellGenome) -> "StructureChoices":
        """Reads :meth:`to_dict`; a dict without depths (an older state) fixes them."""
        if "depth_choices" not in data:
            return cls(
                tuple((d,) for d in prototype.depths), tuple(np.ones(1) for _ in prototype.depths)
            )
        neck = {}
        if "neck_widths" in data:
            neck = dict(
                neck_widths=tuple(int(w) for w in data["neck_widths"]),
                neck_width_probs=np.asarray(data["neck_width_probs"], dtype=np.float64),
                neck_levels=tuple(tuple(c) for c in data["neck_levels"]),
                neck_level_probs=np.asarray(data["neck_level_probs"], dtype=np.float64),
            )
        return cls(
            tuple(tuple(int(d) for d in c) for c in data["depth_choices"]),
            tuple(np.asarray(p, dtype=np.float64) for p in data["depth_probs"]),
            **neck,
        )


class CellGenerator:
    """
    A distribution over :class:`CellGenome` for one prototype (see the module docstring).

    Attributes:
        template: the prototype's genome padded to the largest depths (the module slots;
            gives the forced projections).
        mean, sigma: per integer gene (``CellGenome.integer_genes`` order of the slots),
            of log2 width.
        scale_sigma: spread of the common log2 scale.
        upper: per integer gene, the largest width.
        multiplier_probs: ``(num_slots, len(MULTIPLIER_CHOICES))``.
        projection_probs: ``(num_slots,)``; 1 for the modules that start a stage.
        structure: depths and neck (:class:`StructureChoices`).
    """

    def __init__(
        self,
        template: CellGenome,
        mean: np.ndarray,
        sigma: np.ndarray,
        scale_sigma: float,
        upper: np.ndarray,
        multiplier_probs: np.ndarray,
        projection_probs: np.ndarray,
        structure: Optional[StructureChoices] = None,
    ):
        self.template = template
        self.mean = np.asarray(mean, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.scale_sigma = float(scale_sigma)
        self.upper = np.asarray(upper, dtype=np.int64)
        self.multiplier_probs = np.asarray(multiplier_probs, dtype=np.float64)
        self.projection_probs = np.asarray(projection_probs, dtype=np.float64)
        self.structure = structure or StructureChoices.from_dict({}, template)
        genes, n = len(template.integer_genes()), template.num_modules
        assert self.structure.max_depths == template.depths
        assert self.mean.shape == self.sigma.shape == self.upper.shape == (genes,)
        assert self.multiplier_probs.shape == (n, len(MULTIPLIER_CHOICES))
        assert self.projection_probs.shape == (n,)

    @classmethod
    def from_prototype(cls, prototype: CellGenome, settings: GeneratorSettings) -> "CellGenerator":
        """G_0: centred on ``prototype``."""
        structure = StructureChoices.around(prototype, settings)
        template = prototype.padded(structure.max_depths)
        genes = template.integer_genes()
        n, choices = template.num_modules, len(MULTIPLIER_CHOICES)
        multiplier_probs = np.full((n, choices), (1 - settings.initial_keep) / (choices - 1))
        for i, m in enumerate(template.multiplier):
            multiplier_probs[i, MULTIPLIER_CHOICES.index(m)] = settings.initial_keep
        projection_probs = np.array(
            [
                1.0 - settings.initial_projection if p else settings.initial_projection
                for p in template.projection
            ]
        )
        projection_probs[list(template.first_modules)] = 1.0
        return cls(
            template=template,
            mean=np.log2(genes),
            sigma=np.full(len(genes), settings.initial_sigma),
            scale_sigma=settings.initial_scale_sigma,
            upper=np.maximum(1, np.ceil(genes * settings.max_growth)).astype(np.int64),
            multiplier_probs=_floor_probabilities(multiplier_probs, settings.prob_floor),
            projection_probs=projection_probs,
            structure=structure,
        )

    def _shaped(self, slots: CellGenome, depths, neck) -> CellGenome:
        """A slot genome cut to ``depths``, with ``neck`` (None: the template's)."""
        genome = slots.truncated(depths)
        return replace(genome, neck=neck if neck is not None else self.template.neck)

    def sample(self, rng: np.random.Generator) -> CellGenome:
        """One genome; the draws depend only on ``rng``'s state."""
        scale = self.scale_sigma * rng.standard_normal()
        log_widths = self.mean + scale + self.sigma * rng.standard_normal(len(self.mean))
        widths = np.clip(np.round(np.exp2(log_widths)), 1, self.upper).astype(np.int64)
        multipliers = tuple(
            MULTIPLIER_CHOICES[rng.choice(len(MULTIPLIER_CHOICES), p=probs)]
            for probs in self.multiplier_probs
        )
        projection = tuple(
            bool(x) for x in rng.random(len(self.projection_probs)) < self.projection_probs
        )
        genome = self.template.with_integer_genes(widths)
        first = set(self.template.first_modules)
        projection = tuple(p or i in first for i, p in enumerate(projection))
        slots = replace(genome, multiplier=multipliers, projection=projection)
        depths, neck = self.structure.sample(rng)
        return self._shaped(slots, depths, neck)

    def _slot_mask(self, genome: CellGenome) -> np.ndarray:
        """Per module slot: whether ``genome`` has that module."""
        return np.concatenate(
            [np.arange(slots) < have for slots, have in zip(self.template.depths, genome.depths)]
        )

    def updated(self, elite: Sequence[CellGenome], settings: GeneratorSettings) -> "CellGenerator":
        """
        G_{k+1} from G_k (``self``) and the best candidates so far (``elite``): the means
        move ``settings.mean_rate`` of the way to the elite's mean log2 widths; spreads and
        probabilities ``settings.spread_rate`` of the way to the elite's standard
        deviations and choice frequencies. Each slot learns from the elite members that
        have it.
        """
        if not elite:
            raise ValueError("updating a generator needs at least one elite candidate")
        a, b = settings.mean_rate, settings.spread_rate
        masks = np.stack([self._slot_mask(g) for g in elite])  # (elite, slots)
        padded = [g.padded(self.template.depths) for g in elite]
        gene_masks = np.concatenate(
            [np.ones((len(elite), 1 + len(self.template.depths)), bool), masks, masks], axis=1
        )
        logs = np.log2(np.stack([g.integer_genes() for g in padded]).astype(np.float64))
        logs = np.where(gene_masks, logs, np.nan)
        present = gene_masks.any(axis=0)
        # Each candidate's common scale (its average log2 width) and its cell-by-cell shape.
        scales = np.nanmean(logs, axis=1)
        shapes = logs - scales[:, None]
        # A slot that no elite member has (a column of NaN, read as 0) keeps its own.
        elite_mean = np.where(present, np.nanmean(np.where(present, logs, 0.0), axis=0), self.mean)
        elite_std = np.where(present, np.nanstd(np.where(present, shapes, 0.0), axis=0), self.sigma)
        mean = (1 - a) * self.mean + a * elite_mean
        sigma = np.maximum(settings.min_sigma, (1 - b) * self.sigma + b * elite_std)
        scale_sigma = max(settings.min_sigma, (1 - b) * self.scale_sigma + b * scales.std())

        counts = masks.sum(axis=0)  # elite members per slot
        chosen = np.array([[MULTIPLIER_CHOICES.index(m) for m in g.multiplier] for g in padded])
        frequencies = (
            np.stack(
                [((chosen == c) & masks).sum(axis=0) for c in range(len(MULTIPLIER_CHOICES))],
                axis=1,
            )
            / np.maximum(counts, 1)[:, None]
        )
        moved = _floor_probabilities(
            (1 - b) * self.multiplier_probs + b * frequencies, settings.prob_floor
        )
        multiplier_probs = np.where(counts[:, None] > 0, moved, self.multiplier_probs)
        projected = (np.array([g.projection for g in padded], dtype=np.float64) * masks).sum(
            axis=0
        ) / np.maximum(counts, 1)
        projection_probs = np.where(
            counts > 0,
            np.clip(
                (1 - b) * self.projection_probs + b * projected,
                settings.prob_floor,
                1 - settings.prob_floor,
            ),
            self.projection_probs,
        )
        projection_probs[list(self.template.first_modules)] = 1.0
        return CellGenerator(
            self.template,
            mean,
            sigma,
            scale_sigma,
            self.upper,
            multiplier_probs,
            projection_probs,
            self.structure.updated(elite, settings),
        )

    def center(self) -> CellGenome:
        """The most likely genome: rounded mean widths, most likely choices."""
        widths = np.clip(np.round(np.exp2(self.mean)), 1, self.upper).astype(np.int64)
        genome = self.template.with_integer_genes(widths)
        multipliers = tuple(MULTIPLIER_CHOICES[int(i)] for i in self.multiplier_probs.argmax(1))
        projection = tuple(bool(p >= 0.5) for p in self.projection_probs)
        slots = replace(genome, multiplier=multipliers, projection=projection)
        depths, neck = self.structure.most_likely()
        return self._shaped(slots, depths, neck)

    def to_dict(self) -> Dict:
        data = {
            "mean": self.mean.tolist(),
            "sigma": self.sigma.tolist(),
            "scale_sigma": self.scale_sigma,
            "upper": self.upper.tolist(),
            "multiplier_choices": list(MULTIPLIER_CHOICES),
            "multiplier_probs": self.multiplier_probs.tolist(),
            "projection_probs": self.projection_probs.tolist(),
        }
        data.update(self.structure.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: Dict, prototype: CellGenome) -> "CellGenerator":
        """Reads :meth:`to_dict` for the generator of ``prototype`` (unpadded)."""
        structure = StructureChoices.from_dict(data, prototype)
        return cls(
            prototype.padded(structure.max_depths),
            mean=data["mean"],
            sigma=data["sigma"],
            scale_sigma=data["scale_sigma"],
            upper=data["upper"],
            multiplier_probs=data["multiplier_probs"],
            projection_probs=data["projection_probs"],
            structure=structure,
        )

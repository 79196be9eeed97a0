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
  projection instead of the identity.

G_0 is centred on the human prototype. :meth:`CellGenerator.updated` builds the next
generator from the best candidates found so far (the elite), as the cross-entropy method
does: the means move a fraction ``mean_rate`` of the way to the elite's mean log2 widths;
the spreads and probabilities move a smaller fraction ``spread_rate`` towards the elite's
(the standard deviation of each width, and of their average log2 width for the common
scale; their choice frequencies), so that the generator does not narrow down faster than
a few noisy evaluations warrant. Floors on spreads and probabilities keep every choice
possible.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Sequence

import numpy as np

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

    def to_dict(self) -> Dict:
        return asdict(self)


def _floor_probabilities(probs: np.ndarray, floor: float) -> np.ndarray:
    probs = np.maximum(probs, floor)
    return probs / probs.sum(axis=-1, keepdims=True)


class CellGenerator:
    """
    A distribution over :class:`CellGenome` for one prototype (see the module docstring).

    Attributes:
        template: the prototype's genome (gives the depths and the forced projections).
        mean, sigma: per integer gene (``CellGenome.integer_genes`` order), of log2 width.
        scale_sigma: spread of the common log2 scale.
        upper: per integer gene, the largest width.
        multiplier_probs: ``(num_modules, len(MULTIPLIER_CHOICES))``.
        projection_probs: ``(num_modules,)``; 1 for the modules that start a stage.
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
    ):
        self.template = template
        self.mean = np.asarray(mean, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.scale_sigma = float(scale_sigma)
        self.upper = np.asarray(upper, dtype=np.int64)
        self.multiplier_probs = np.asarray(multiplier_probs, dtype=np.float64)
        self.projection_probs = np.asarray(projection_probs, dtype=np.float64)
        genes, n = len(template.integer_genes()), template.num_modules
        assert self.mean.shape == self.sigma.shape == self.upper.shape == (genes,)
        assert self.multiplier_probs.shape == (n, len(MULTIPLIER_CHOICES))
        assert self.projection_probs.shape == (n,)

    @classmethod
    def from_prototype(cls, prototype: CellGenome, settings: GeneratorSettings) -> "CellGenerator":
        """G_0: centred on ``prototype``."""
        genes = prototype.integer_genes()
        n, choices = prototype.num_modules, len(MULTIPLIER_CHOICES)
        multiplier_probs = np.full((n, choices), (1 - settings.initial_keep) / (choices - 1))
        for i, m in enumerate(prototype.multiplier):
            multiplier_probs[i, MULTIPLIER_CHOICES.index(m)] = settings.initial_keep
        projection_probs = np.array(
            [
                1.0 - settings.initial_projection if p else settings.initial_projection
                for p in prototype.projection
            ]
        )
        projection_probs[list(prototype.first_modules)] = 1.0
        return cls(
            template=prototype,
            mean=np.log2(genes),
            sigma=np.full(len(genes), settings.initial_sigma),
            scale_sigma=settings.initial_scale_sigma,
            upper=np.maximum(1, np.ceil(genes * settings.max_growth)).astype(np.int64),
            multiplier_probs=_floor_probabilities(multiplier_probs, settings.prob_floor),
            projection_probs=projection_probs,
        )

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
        return CellGenome(
            depths=genome.depths,
            stem=genome.stem,
            widths=genome.widths,
            compression=genome.compression,
            multiplier=multipliers,
            mixing=genome.mixing,
            projection=projection,
        )

    def updated(self, elite: Sequence[CellGenome], settings: GeneratorSettings) -> "CellGenerator":
        """
        G_{k+1} from G_k (``self``) and the best candidates so far (``elite``): the means
        move ``settings.mean_rate`` of the way to the elite's mean log2 widths; spreads and
        probabilities ``settings.spread_rate`` of the way to the elite's standard
        deviations and choice frequencies.
        """
        if not elite:
            raise ValueError("updating a generator needs at least one elite candidate")
        a, b = settings.mean_rate, settings.spread_rate
        logs = np.log2(np.stack([g.integer_genes() for g in elite]).astype(np.float64))
        # Each candidate's common scale (its average log2 width) and its cell-by-cell shape.
        scales = logs.mean(axis=1)
        shapes = logs - scales[:, None]
        mean = (1 - a) * self.mean + a * logs.mean(axis=0)
        sigma = np.maximum(settings.min_sigma, (1 - b) * self.sigma + b * shapes.std(axis=0))
        scale_sigma = max(settings.min_sigma, (1 - b) * self.scale_sigma + b * scales.std())

        chosen = np.array([[MULTIPLIER_CHOICES.index(m) for m in g.multiplier] for g in elite])
        frequencies = np.stack(
            [(chosen == c).mean(axis=0) for c in range(len(MULTIPLIER_CHOICES))], axis=1
        )
        multiplier_probs = _floor_probabilities(
            (1 - b) * self.multiplier_probs + b * frequencies, settings.prob_floor
        )
        projected = np.array([g.projection for g in elite], dtype=np.float64).mean(axis=0)
        projection_probs = np.clip(
            (1 - b) * self.projection_probs + b * projected,
            settings.prob_floor,
            1 - settings.prob_floor,
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
        )

    def center(self) -> CellGenome:
        """The most likely genome: rounded mean widths, most likely choices."""
        widths = np.clip(np.round(np.exp2(self.mean)), 1, self.upper).astype(np.int64)
        genome = self.template.with_integer_genes(widths)
        multipliers = tuple(MULTIPLIER_CHOICES[int(i)] for i in self.multiplier_probs.argmax(1))
        projection = tuple(bool(p >= 0.5) for p in self.projection_probs)
        return CellGenome(
            genome.depths,
            genome.stem,
            genome.widths,
            genome.compression,
            multipliers,
            genome.mixing,
            projection,
        )

    def to_dict(self) -> Dict:
        return {
            "mean": self.mean.tolist(),
            "sigma": self.sigma.tolist(),
            "scale_sigma": self.scale_sigma,
            "upper": self.upper.tolist(),
            "multiplier_choices": list(MULTIPLIER_CHOICES),
            "multiplier_probs": self.multiplier_probs.tolist(),
            "projection_probs": self.projection_probs.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict, template: CellGenome) -> "CellGenerator":
        return cls(
            template,
            mean=data["mean"],
            sigma=data["sigma"],
            scale_sigma=data["scale_sigma"],
            upper=data["upper"],
            multiplier_probs=data["multiplier_probs"],
            projection_probs=data["projection_probs"],
        )

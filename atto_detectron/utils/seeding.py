"""
Random numbers as a function of (seed, iteration, process), not of what ran before.

A run resumed from a checkpoint at iteration k then draws, from k + 1 on, exactly what
the uninterrupted run drew: the same images, augmentations and sampled proposals.
"""

import contextlib
import random

import numpy as np
import torch

__all__ = ["derived_seed", "seed_all_generators", "seeded_generators"]

# Kinds of draws, so that no two of them share a seed.
STEP = 0
SAMPLE = 1


def derived_seed(*keys: int) -> int:
    """A 32-bit seed mixed from non-negative integer ``keys`` (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def seed_all_generators(seed: int) -> None:
    """Seeds torch's (all devices), numpy's and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def seeded_generators(seed: int):
    """Seeds numpy's and Python's global generators for the block, then restores them."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)

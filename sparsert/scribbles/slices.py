"""Which axial slices (``k``, numpy axis 0) a simulated user scribbles on."""

from __future__ import annotations

import numpy as np


def slices_with(mask: np.ndarray) -> np.ndarray:
    """Indices of the axial slices holding any voxel of ``mask``."""
    return np.flatnonzero(mask.any(axis=(1, 2)))


def slice_count(available: int, fraction: float) -> int:
    """How many of ``available`` slices a fraction asks for: rounded, at least one."""
    return max(1, int(round(fraction * available)))


def regular_slices(slices: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Evenly spaced picks from ``slices`` (every second one at 0.5), starting at a random phase."""
    n = slice_count(len(slices), fraction)
    step = len(slices) / n
    return slices[(rng.uniform(0.0, step) + step * np.arange(n)).astype(int)]


def random_slices(slices: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Picks from ``slices`` at random, sorted."""
    return np.sort(rng.choice(slices, size=slice_count(len(slices), fraction), replace=False))

"""How a dose is shown: its 100 % level, the isodose levels and the colours of wash and lines.

Kept free of VTK and MRML so that the Slicer scene and plain-Python figures share one definition.
The dose wash uses a jet-like scale (dark blue at 0 Gy through cyan, yellow and red to dark red at
the top of the window), the convention of most planning systems; an isodose line takes the wash
colour of its dose, so lines and wash read against one colour legend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsert.errors import InputError

ISODOSE_PERCENTS: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100, 105)
LOWER_THRESHOLD_PERCENT = 5.0

# Jet: (position in the window, RGB).
_JET = (
    (0.0, (0.0, 0.0, 0.5)),
    (0.125, (0.0, 0.0, 1.0)),
    (0.375, (0.0, 1.0, 1.0)),
    (0.625, (1.0, 1.0, 0.0)),
    (0.875, (1.0, 0.0, 0.0)),
    (1.0, (0.5, 0.0, 0.0)),
)


@dataclass(frozen=True)
class DoseNormalisation:
    """The dose called 100 %: the highest prescription, or the maximum dose when no target has one."""

    gy: float
    source: str  # "prescription" or "maximum dose"

    def gy_at(self, percent: float) -> float:
        return self.gy * float(percent) / 100.0

    @property
    def lower_threshold_gy(self) -> float:
        """Doses below this are not washed (5 % of the 100 % level)."""
        return self.gy_at(LOWER_THRESHOLD_PERCENT)


def dose_normalisation(prescription_gy: float | None, max_dose_gy: float) -> DoseNormalisation:
    if prescription_gy is not None:
        if not prescription_gy > 0:
            raise InputError(f"prescription must be positive, got {prescription_gy} Gy")
        return DoseNormalisation(float(prescription_gy), "prescription")
    if not max_dose_gy > 0:
        raise InputError("the dose is zero everywhere and no prescription is given: nothing to normalise to")
    return DoseNormalisation(float(max_dose_gy), "maximum dose")


def wash_colors(n: int = 256) -> np.ndarray:
    """``n`` RGB colours (0..1) spanning the dose window from 0 Gy to its top."""
    return jet(np.linspace(0.0, 1.0, n))


def jet(position: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """RGB of the wash at ``position`` (0 = bottom of the window, 1 = top; clipped)."""
    x = np.clip(np.asarray(position, dtype=float), 0.0, 1.0)
    stops = np.array([p for p, _ in _JET])
    rgb = np.array([c for _, c in _JET])
    return np.stack([np.interp(x, stops, rgb[:, channel]) for channel in range(3)], axis=-1)


def isodose_levels(
    normalisation: DoseNormalisation, window_max_gy: float, percents: Sequence[float] = ISODOSE_PERCENTS
) -> list[tuple[float, float, tuple[float, float, float]]]:
    """(percent, Gy, RGB) of each isodose level, coloured as the wash colours that dose."""
    if not window_max_gy > 0:
        raise InputError(f"dose window must end above 0 Gy, got {window_max_gy}")
    levels = []
    for percent in percents:
        gy = normalisation.gy_at(percent)
        levels.append((float(percent), gy, tuple(float(c) for c in jet(gy / window_max_gy))))
    return levels

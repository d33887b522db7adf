"""Named, possibly overlapping structures on one grid.

A :class:`Segmentation` is what a Slicer segmentation node holds: an ordered list of named
segments with colours, each a boolean mask on a shared :class:`Geometry`. Masks may overlap
(targets overlap organs), so this is never collapsed into one labelmap internally.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, resample

BACKGROUND = "background"


@dataclass
class Segment:
    name: str
    mask: np.ndarray  # bool, [k, j, i]
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)  # RGB in 0..1


@dataclass
class Segmentation:
    geometry: Geometry
    segments: list[Segment] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [s.name.lower() for s in self.segments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InputError(f"segment names must be unique (case-insensitive); repeated: {', '.join(dupes)}")
        for seg in self.segments:
            if seg.mask.shape != self.geometry.shape:
                raise InputError(f"segment '{seg.name}' has shape {seg.mask.shape}, expected {self.geometry.shape}")
            if seg.mask.dtype != bool:
                seg.mask = seg.mask.astype(bool)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def find(self, name: str) -> Segment | None:
        """The segment called ``name`` (case-insensitive), or None."""
        for seg in self.segments:
            if seg.name.lower() == name.lower():
                return seg
        return None

    def __getitem__(self, name: str) -> Segment:
        seg = self.find(name)
        if seg is None:
            raise InputError(f"no segment named '{name}' (segments: {', '.join(self.names) or 'none'})")
        return seg

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def add(self, name: str, mask: np.ndarray, color: tuple[float, float, float] | None = None) -> Segment:
        if name in self:
            raise InputError(f"segment '{name}' already exists")
        seg = Segment(name, np.asarray(mask, dtype=bool), color or default_color(len(self.segments)))
        if seg.mask.shape != self.geometry.shape:
            raise InputError(f"segment '{name}' has shape {seg.mask.shape}, expected {self.geometry.shape}")
        self.segments.append(seg)
        return seg

    def masks(self) -> dict[str, np.ndarray]:
        return {s.name: s.mask for s in self.segments}

    def empty_segments(self) -> list[str]:
        return [s.name for s in self.segments if not s.mask.any()]

    def resampled(self, target: Geometry) -> "Segmentation":
        """The same segments on another grid (nearest neighbour through physical space)."""
        if self.geometry.matches(target):
            return Segmentation(target, [Segment(s.name, s.mask, s.color) for s in self.segments])
        out = Segmentation(target)
        for seg in self.segments:
            out.segments.append(Segment(seg.name, resample(Volume(seg.mask, self.geometry), target, label=True).array, seg.color))
        return out

    def require_grid(self, target: Geometry, what: str = "segmentation") -> None:
        if not self.geometry.matches(target):
            raise InputError(
                f"{what} is on a different grid ({self.geometry.describe()}) than the image ({target.describe()})"
            )


# Slicer's default "generic anatomy" palette, so written segments look familiar.
_PALETTE = [
    (0.502, 0.682, 0.502), (0.945, 0.839, 0.569), (0.694, 0.478, 0.396), (0.435, 0.722, 0.824),
    (0.847, 0.396, 0.310), (0.867, 0.510, 0.396), (0.565, 0.933, 0.565), (0.753, 0.408, 0.345),
    (0.863, 0.961, 0.078), (0.306, 0.247, 0.000), (1.000, 0.980, 0.863), (0.902, 0.863, 0.275),
]


def default_color(index: int) -> tuple[float, float, float]:
    return _PALETTE[index % len(_PALETTE)]

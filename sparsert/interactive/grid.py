"""Grids of a refinement session: the working grid the networks run on, and co-registration checks."""

from __future__ import annotations

import numpy as np

from sparsert.errors import InputError
from sparsert.io.volume import Geometry

# A secondary image must cover at least this share of the first image's physical box.
MIN_COVERAGE = 0.5


def working_geometry(reference: Geometry, spacing: tuple[float, float, float] | None) -> Geometry:
    """``reference``'s physical box sampled at ``spacing`` (i, j, k mm); ``reference`` itself when None.

    The outer edges of the voxels keep their place, so the two grids cover the same box.
    """
    if spacing is None or np.allclose(spacing, reference.spacing):
        return reference
    old, new = np.asarray(reference.spacing), np.asarray(spacing, dtype=float)
    size_ijk = np.maximum(1, np.round(np.asarray(reference.size) * old / new)).astype(int)
    direction = np.asarray(reference.direction).reshape(3, 3)
    origin = np.asarray(reference.origin) + direction @ ((new - old) / 2.0)
    return Geometry(
        shape=(int(size_ijk[2]), int(size_ijk[1]), int(size_ijk[0])),
        spacing=tuple(float(s) for s in new),
        origin=tuple(float(o) for o in origin),
        direction=reference.direction,
    )


def _physical_box(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """LPS box of the voxels themselves (centres' box grown by half a voxel)."""
    lo, hi = geometry.physical_bounds()
    half = np.abs(np.asarray(geometry.direction).reshape(3, 3)) @ (np.asarray(geometry.spacing) / 2.0)
    return lo - half, hi + half


def coverage(reference: Geometry, other: Geometry) -> float:
    """Share of ``reference``'s physical box that ``other``'s box covers (0..1)."""
    lo_a, hi_a = _physical_box(reference)
    lo_b, hi_b = _physical_box(other)
    overlap = np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0.0, None)
    return float(np.prod(overlap) / np.prod(hi_a - lo_a))


def check_coregistered(reference: Geometry, other: Geometry, name: str, reference_name: str) -> None:
    """InputError when ``other`` cannot be the same patient region as ``reference`` in physical space."""
    share = coverage(reference, other)
    if share < MIN_COVERAGE:
        raise InputError(
            f"{name} ({other.describe()}) covers {share:.0%} of the physical extent of {reference_name} "
            f"({reference.describe()}); co-registered images must overlap by at least {MIN_COVERAGE:.0%} "
            "(different patient position or not registered?)"
        )


def click_to_working(
    ijk: tuple[float, float, float], reference: Geometry, working: Geometry, what: str = "click"
) -> tuple[int, int, int]:
    """Voxel (k, j, i) of ``working`` holding voxel ``ijk`` (ITK order) of ``reference``.

    InputError when ``ijk`` is not three numbers inside ``reference``.
    """
    try:
        point = np.asarray(ijk, dtype=float).reshape(3)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected three voxel indices (i, j, k), got {ijk!r}") from None
    size = np.asarray(reference.size)
    rounded = np.round(point)
    if not np.all(np.isfinite(point)) or np.any(rounded < 0) or np.any(rounded >= size):
        raise InputError(
            f"{what} at voxel (i, j, k) = {tuple(float(v) for v in point)} is outside the image "
            f"(valid 0..{size[0] - 1}, 0..{size[1] - 1}, 0..{size[2] - 1})"
        )
    if working == reference:
        i, j, k = (int(v) for v in rounded)
        return (k, j, i)
    lps = reference.ijk_to_lps() @ np.append(rounded, 1.0)
    index = np.round((np.linalg.inv(working.ijk_to_lps()) @ lps)[:3])
    i, j, k = (int(v) for v in np.clip(index, 0, np.asarray(working.size) - 1))
    return (k, j, i)

"""Background scribbles: simulated user strokes, and automatic background from a foreground.

Simulated strokes imitate what a user paints as "Background": a partial loop around the
structures at some distance, and a few short straight strokes farther away, on a subset of axial
slices, never touching a structure.

The automatic background serves the steps that get only a foreground (one scribbled structure, a
coarse region from another modality): every voxel farther than a margin from the foreground. It is
the complement of the foreground grown by a ball of that radius, i.e. an erosion of the
foreground's complement, computed exactly in millimetres with a distance transform.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line

from sparsert.errors import InputError
from sparsert.io.volume import Geometry
from sparsert.scribbles.slices import regular_slices

_EIGHT = np.ones((3, 3), dtype=bool)


def background_strokes(
    union: np.ndarray,
    geometry: Geometry,
    slice_fraction: float,
    rng: np.random.Generator,
    *,
    line_width_vox: int = 1,
    body_mask: np.ndarray | None = None,
    ring_mm: tuple[float, float] = (10.0, 30.0),
    strokes_per_slice: int = 2,
    stroke_mm: tuple[float, float] = (15.0, 50.0),
) -> np.ndarray:
    """Background strokes outside ``union`` (all structures) on some axial slices.

    Slices are picked like structure slices among those within ``ring_mm[1]`` of a structure (so
    also just above and below them). Per slice: a partial loop at a random distance in ``ring_mm``
    from the structures (inside the body when ``body_mask`` is given) and ``strokes_per_slice``
    straight strokes of a length in ``stroke_mm`` farther than ``ring_mm[0]`` from them (a quarter
    of them outside the body when ``body_mask`` is given).
    """
    strokes = np.zeros(union.shape, dtype=bool)
    if not union.any():
        return strokes
    distance = ndi.distance_transform_edt(~union, sampling=geometry.spacing_kji)
    near = np.flatnonzero(distance.min(axis=(1, 2)) <= ring_mm[1])
    spacing_ji = geometry.spacing_kji[1:]
    for k in regular_slices(near, slice_fraction, rng):
        d = distance[k]
        body = body_mask[k] if body_mask is not None else np.ones_like(d, dtype=bool)
        stroke = _ring(d, rng.uniform(*ring_mm), spacing_ji, rng) & body
        for _ in range(strokes_per_slice):
            region = d > ring_mm[0]
            if body_mask is not None:
                region &= body if rng.random() < 0.75 else ~body
            stroke |= _straight_stroke(region, spacing_ji, stroke_mm, rng)
        if line_width_vox > 1:
            stroke = ndi.binary_dilation(stroke, structure=np.ones((line_width_vox,) * 2, dtype=bool))
        # Never on a structure, whatever the width.
        strokes[k] = stroke & (d > 0)
    return strokes


def automatic_background(foreground: np.ndarray, geometry: Geometry, *, margin_mm: float = 20.0) -> np.ndarray:
    """Background seeds for a foreground known only roughly: every voxel farther than ``margin_mm``.

    ``foreground`` is a bool array on ``geometry`` (a scribble or a coarse region). The margin must
    exceed the distance from the foreground to the true boundary (for a scribble, about the
    structure's radius), since nothing beyond it can be completed as foreground.
    """
    if foreground.shape != geometry.shape:
        raise InputError(f"foreground has shape {foreground.shape}, expected {geometry.shape}")
    if not foreground.any():
        raise InputError("automatic background needs a non-empty foreground")
    if margin_mm <= 0:
        raise InputError(f"margin_mm must be positive, got {margin_mm}")
    return ndi.distance_transform_edt(~foreground, sampling=geometry.spacing_kji) > margin_mm


def _ring(distance: np.ndarray, radius: float, spacing_ji, rng: np.random.Generator) -> np.ndarray:
    """A random arc (half to all of it) of the one-voxel outline at ``radius`` mm from structures."""
    inside = distance <= radius
    ring = ndi.binary_dilation(inside) & ~inside
    points = np.argwhere(ring)
    if len(points) == 0:
        return ring
    offsets = (points - points.mean(axis=0)) * np.asarray(spacing_ji)
    angle = np.arctan2(offsets[:, 0], offsets[:, 1])
    start, span = rng.uniform(-np.pi, np.pi), rng.uniform(np.pi, 2 * np.pi)
    keep = np.mod(angle - start, 2 * np.pi) <= span
    arc = np.zeros_like(ring)
    arc[tuple(points[keep].T)] = True
    return arc


def _straight_stroke(
    region: np.ndarray, spacing_ji, length_mm: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """A straight stroke from a random voxel of ``region``, cut where it would leave the region."""
    stroke = np.zeros_like(region)
    candidates = np.argwhere(region)
    if len(candidates) == 0:
        return stroke
    start = candidates[rng.integers(len(candidates))]
    angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(*length_mm)
    end = np.round(start + length * np.array([np.sin(angle), np.cos(angle)]) / np.asarray(spacing_ji)).astype(int)
    rows, cols = line(*start, *end)
    inside = (rows >= 0) & (rows < region.shape[0]) & (cols >= 0) & (cols < region.shape[1])
    stroke[rows[inside], cols[inside]] = True
    stroke &= region
    labels, _ = ndi.label(stroke, structure=_EIGHT)
    return labels == labels[tuple(start)]

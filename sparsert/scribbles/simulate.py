"""Simulated user scribbles for training and evaluating scribble completion.

A physicist scribbles on a handful of axial slices (``k``, numpy axis 0): a line along each
structure's cross-section or a dot in a small one, plus background strokes. This module draws such
scribbles from dense structures, reproducibly (same seed, same scribbles), and never outside the
structure it belongs to (structures overlap, so a scribble may lie inside another structure too).

Styles:

- ``"line"``: on regularly spaced slices (random phase), a random connected piece of the longest
  path through the skeleton of the eroded cross-section; cross-sections smaller than
  ``dot_area_vox`` get a dot instead.
- ``"dot"``: one voxel deep inside each cross-section piece.
- ``"mixed"``: per structure a varied slice density on randomly chosen slices, per slice a line or
  a dot, varied line widths and lengths, as real users' scribbles vary (for training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse.csgraph import dijkstra
from skimage.graph import pixel_graph
from skimage.morphology import skeletonize

from sparsert.errors import InputError
from sparsert.io.segmentation import BACKGROUND, Segment, Segmentation
from sparsert.scribbles.background import background_strokes
from sparsert.scribbles.slices import random_slices, regular_slices, slices_with

Style = Literal["line", "dot", "mixed"]
STYLES = ("line", "dot", "mixed")

# The scribble segment holding background strokes (looked up case-insensitively as BACKGROUND).
BACKGROUND_NAME = BACKGROUND.capitalize()
BACKGROUND_COLOR = (0.25, 0.25, 0.25)

_EIGHT = np.ones((3, 3), dtype=bool)


# The sparse evaluation setting of the completion issue: about every second slice holding a
# structure, single-voxel lines. Training varies around it (real users vary).
EVAL_SCRIBBLES = dict(slice_fraction=0.5, style="line", line_width_vox=1)


def simulate_scribbles(
    structures: Segmentation,
    *,
    slice_fraction: float = 0.5,
    style: Style = "line",
    line_width_vox: int = 1,
    path_fraction: tuple[float, float] = (0.5, 1.0),
    dot_area_vox: int = 6,
    background: bool = True,
    body_mask: np.ndarray | None = None,
    seed: int | np.random.Generator | None = None,
) -> Segmentation:
    """Scribbles for every non-empty structure of ``structures``, plus a "Background" segment.

    ``slice_fraction`` of the axial slices containing a structure are scribbled (at least one);
    ``path_fraction`` bounds the length of a line as a fraction of the longest skeleton path of the
    cross-section; ``dot_area_vox`` is the cross-section area (voxels) below which a dot is drawn.
    ``body_mask`` (bool, on the structures' grid) keeps most background strokes inside the body.
    Structures without voxels get an empty scribble segment.
    """
    if style not in STYLES:
        raise InputError(f"unknown scribble style '{style}' (choose one of {', '.join(STYLES)})")
    if not 0.0 < slice_fraction <= 1.0:
        raise InputError(f"slice_fraction must be in (0, 1], got {slice_fraction}")
    if line_width_vox < 1:
        raise InputError(f"line_width_vox must be at least 1, got {line_width_vox}")
    lo, hi = path_fraction
    if not 0.0 < lo <= hi <= 1.0:
        raise InputError(f"path_fraction must satisfy 0 < low <= high <= 1, got {path_fraction}")
    if BACKGROUND_NAME in structures and background:
        raise InputError(f"structures already contain a segment named '{BACKGROUND_NAME}'")
    if body_mask is not None and body_mask.shape != structures.geometry.shape:
        raise InputError(f"body mask has shape {body_mask.shape}, expected {structures.geometry.shape}")
    rng = np.random.default_rng(seed)
    spacing_ji = structures.geometry.spacing_kji[1:]

    out = Segmentation(structures.geometry)
    for seg in structures.segments:
        scribble = np.zeros_like(seg.mask)
        if seg.mask.any():
            fraction, pick = slice_fraction, regular_slices
            if style == "mixed":
                fraction = float(np.clip(slice_fraction * rng.uniform(0.5, 1.5), 0.05, 1.0))
                pick = random_slices
            for k in pick(slices_with(seg.mask), fraction, rng):
                scribble[k] = _scribble_section(
                    seg.mask[k], style, line_width_vox, path_fraction, dot_area_vox, spacing_ji, rng
                )
        out.segments.append(Segment(seg.name, scribble, seg.color))

    if background:
        union = np.zeros(structures.geometry.shape, dtype=bool)
        for seg in structures.segments:
            union |= seg.mask
        strokes = background_strokes(
            union, structures.geometry, slice_fraction, rng, line_width_vox=line_width_vox, body_mask=body_mask
        )
        out.segments.append(Segment(BACKGROUND_NAME, strokes, BACKGROUND_COLOR))
    return out


@dataclass(frozen=True)
class ScribbleStats:
    voxels: int  # scribbled voxels inside the structure
    coverage: float  # fraction of the structure's voxels scribbled
    slices: int  # axial slices holding a scribble
    structure_slices: int  # axial slices holding the structure


def scribble_stats(scribbles: Segmentation, structures: Segmentation) -> dict[str, ScribbleStats]:
    """Per structure: how much of it the scribble of the same name covers."""
    scribbles.require_grid(structures.geometry, "scribbles")
    stats = {}
    for seg in structures.segments:
        found = scribbles.find(seg.name)
        drawn = found.mask & seg.mask if found is not None else np.zeros_like(seg.mask)
        total = int(seg.mask.sum())
        stats[seg.name] = ScribbleStats(
            voxels=int(drawn.sum()),
            coverage=float(drawn.sum() / total) if total else 0.0,
            slices=len(slices_with(drawn)),
            structure_slices=len(slices_with(seg.mask)),
        )
    return stats


def _scribble_section(
    section: np.ndarray,
    style: Style,
    width: int,
    path_fraction: tuple[float, float],
    dot_area_vox: int,
    spacing_ji: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Strokes on one 2D cross-section: one per piece not much smaller than the largest piece."""
    labels, n = ndi.label(section, structure=_EIGHT)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    if style == "mixed":
        width += int(rng.integers(0, 2))
        path_fraction = (min(0.25, path_fraction[0]), path_fraction[1])
    stroke = np.zeros_like(section)
    for label in np.flatnonzero(areas >= 0.1 * areas.max()) + 1:
        piece = labels == label
        draw = "dot" if style == "dot" else "line"
        if style == "mixed" and rng.random() < 0.25:
            draw = "dot"
        if areas[label - 1] < dot_area_vox:
            draw = "dot"
        if draw == "dot":
            stroke |= _dot(piece, spacing_ji, rng)
        else:
            stroke |= _line(piece, path_fraction, rng)
    if width > 1:
        stroke = ndi.binary_dilation(stroke, structure=np.ones((width, width), dtype=bool))
    # Strictly inside the structure, whatever the width.
    return stroke & section


def _dot(piece: np.ndarray, spacing_ji: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """One voxel in the inner half (by distance to the edge) of the piece, as a user's click."""
    depth = ndi.distance_transform_edt(piece, sampling=spacing_ji)
    candidates = np.argwhere(depth >= 0.5 * depth.max())
    dot = np.zeros_like(piece)
    dot[tuple(candidates[rng.integers(len(candidates))])] = True
    return dot


def _line(piece: np.ndarray, path_fraction: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """A random connected piece of the longest skeleton path of the (eroded) cross-section."""
    eroded = ndi.binary_erosion(piece)
    # Thin pieces (a mandible arc) vanish under erosion but are still drawn as lines.
    skeleton = skeletonize(eroded if eroded.any() else piece)
    path = _longest_path(skeleton, rng)
    length = max(1, int(round(rng.uniform(*path_fraction) * len(path))))
    start = int(rng.integers(0, len(path) - length + 1))
    line = np.zeros_like(piece)
    line[tuple(path[start : start + length].T)] = True
    return line


def _longest_path(skeleton: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ordered (row, col) voxels of the longest geodesic path of one skeleton piece.

    Two sweeps of Dijkstra (farthest point from a random start, then farthest from that) give the
    diameter of a tree-like skeleton, which follows the cross-section's long axis.
    """
    graph, nodes = pixel_graph(skeleton, connectivity=2)
    start = int(rng.integers(len(nodes)))
    first = _farthest(dijkstra(graph, indices=start))
    dist, pred = dijkstra(graph, indices=first, return_predecessors=True)
    node = _farthest(dist)
    order = [node]
    while node != first:
        node = pred[node]
        order.append(node)
    return np.column_stack(np.unravel_index(nodes[order], skeleton.shape))


def _farthest(dist: np.ndarray) -> int:
    return int(np.argmax(np.where(np.isfinite(dist), dist, -1.0)))

"""Planar contours and masks on one slice, in continuous pixel indices (x = column i, y = row j).

Filling follows the even-odd rule over all contours of a slice: a pixel belongs to the structure
when its centre lies inside an odd number of contours, so a contour inside another is a hole (and
an island inside a hole is filled again). This is the rule DICOM RT readers use in practice
(dicompyler-core XORs the contour masks of each plane in its DVH calculation).

The fill is a scanline rasteriser rather than per-polygon point tests (``skimage.draw.polygon``):
it handles all contours of a slice in one pass, costs rows x edges instead of area x vertices,
and assigns a pixel centre lying exactly on an edge to one side only (half-open rule), so two
contours sharing an edge never both claim or both drop it.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import find_contours


def fill_even_odd(contours: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``[j, i]`` mask of ``shape`` of the pixel centres inside an odd number of ``contours``.

    Each contour is an ``(N, 2)`` array of ``(x, y)`` = ``(i, j)`` vertices, implicitly closed.
    """
    rows, cols = shape
    mask = np.zeros(shape, dtype=bool)
    if not contours:
        return mask
    start = np.concatenate([np.asarray(c, dtype=float) for c in contours])
    end = np.concatenate([np.roll(np.asarray(c, dtype=float), -1, axis=0) for c in contours])
    sloped = start[:, 1] != end[:, 1]  # horizontal edges never cross a scanline
    (x0, y0), (x1, y1) = start[sloped].T, end[sloped].T
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    first_row = max(0, int(np.ceil(low.min()))) if low.size else rows
    last_row = min(rows - 1, int(np.floor(high.max()))) if high.size else -1
    for y in range(first_row, last_row + 1):
        # Half-open in y: a vertex on the scanline is counted by exactly one of its two edges.
        active = (low <= y) & (y < high)
        xs = np.sort(x0[active] + (y - y0[active]) * (x1[active] - x0[active]) / (y1[active] - y0[active]))
        # Pixel x is inside where an odd number of crossings lie at or left of it: xs[2m] <= x < xs[2m+1].
        enter = np.clip(np.ceil(xs[0::2]), 0, cols).astype(int)
        leave = np.clip(np.ceil(xs[1::2]), 0, cols).astype(int)
        for a, b in zip(enter, leave):
            mask[y, a:b] = True
    return mask


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Closed contours around a boolean ``[j, i]`` slice mask, as ``(N, 2)`` ``(i, j)`` vertex arrays.

    Contours run at the 0.5 level between pixel centres, so filling them back with
    :func:`fill_even_odd` gives the mask exactly (holes come out as separate contours). Vertices
    where the contour runs straight on are dropped; the first vertex is not repeated at the end.
    """
    # Padding closes contours of structures touching the slice border.
    padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
    out = []
    for contour in find_contours(padded, 0.5):
        ji = contour[:-1] - 1.0  # find_contours repeats the first vertex of a closed contour
        out.append(_drop_collinear(ji[:, ::-1]))
    return out


def _drop_collinear(points: np.ndarray) -> np.ndarray:
    """``points`` without vertices lying on the straight line through their neighbours."""
    before, after = np.roll(points, 1, axis=0), np.roll(points, -1, axis=0)
    a, b = points - before, after - points
    # Vertices are on the half-pixel lattice, so the cross product is exactly zero on straight runs.
    turns = np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) > 1e-9
    return points[turns]

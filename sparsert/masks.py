"""Operations on binary masks shared by the modules."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask`` (face connectivity); the mask itself when it has one part or none."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``mask`` (k, j, i) with the holes of each axial slice filled: background parts of a slice that do not
    reach its border (edge connectivity within the slice), as ``binary_fill_holes`` slice by slice gives,
    in one labelling of the volume."""
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    outside, _ = ndimage.label(~mask, structure=in_plane)
    border = np.concatenate([outside[:, [0, -1], :].ravel(), outside[:, :, [0, -1]].ravel()])
    return mask | ~np.isin(outside, np.unique(border))


def bounding_box(
    mask: np.ndarray, margin: tuple[int, ...] | None = None, shape: tuple[int, ...] | None = None
) -> tuple[slice, ...] | None:
    """The box of ``mask``'s voxels, grown by ``margin`` voxels per axis within ``shape`` (default: the mask's);
    None when the mask is empty."""
    margin = margin or (0,) * mask.ndim
    shape = shape or mask.shape
    box = []
    for axis, m, n in zip(range(mask.ndim), margin, shape):
        # From the mask's projection on each axis: far faster than listing its voxels when it is dense.
        inside = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if inside.size == 0:
            return None
        box.append(slice(max(0, int(inside[0]) - m), min(n, int(inside[-1]) + m + 1)))
    return tuple(box)

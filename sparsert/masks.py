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

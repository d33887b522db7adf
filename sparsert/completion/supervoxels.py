"""Soft supervoxel-boundary targets for the completion module's boundary loss.

SLIC supervoxels on the soft-tissue-windowed CT (physical spacing, inside the body), their boundary
map, the Euclidean distance to it in millimetres, and a Gaussian-smoothed soft target that is 1 on
supervoxel boundaries and falls off with distance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries, slic

from sparsert.preprocessing.ct import ct_to_hu, soft_tissue_window


def supervoxel_boundary_target(
    ct: np.ndarray,
    spacing_kji: tuple[float, float, float],
    body: np.ndarray | None = None,
    *,
    supervoxel_volume_cc: float = 2.0,
    compactness: float = 0.1,
    falloff_mm: float = 4.0,
    smoothing_vox: float = 1.0,
) -> np.ndarray:
    """Soft boundary target in [0, 1], float32, same shape as ``ct``."""
    image = soft_tissue_window(ct_to_hu(ct))
    mask = body.astype(bool) if body is not None else np.ones(ct.shape, dtype=bool)
    voxel_cc = float(np.prod(spacing_kji)) / 1000.0
    n_segments = max(2, int(mask.sum() * voxel_cc / supervoxel_volume_cc))
    labels = slic(
        image,
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=None,
        spacing=np.asarray(spacing_kji),
        mask=mask,
        start_label=1,
    )
    boundary = find_boundaries(labels, mode="inner") & mask
    distance = ndimage.distance_transform_edt(~boundary, sampling=spacing_kji)
    soft = np.exp(-0.5 * (distance / falloff_mm) ** 2)
    return ndimage.gaussian_filter(soft, smoothing_vox).astype(np.float32)

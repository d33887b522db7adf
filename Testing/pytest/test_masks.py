"""Shared binary-mask operations."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from sparsert.masks import bounding_box, fill_holes_per_slice, largest_component


def test_holes_are_filled_slice_by_slice_as_scipy_does():
    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((6, 40, 40)) > 0.35)
    expected = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    filled = fill_holes_per_slice(mask)
    assert np.array_equal(filled, expected) and filled.sum() > mask.sum()


def test_a_hole_is_filled_only_where_its_slice_encloses_it():
    mask = np.zeros((3, 9, 9), bool)
    mask[:, 2:7, 2:7] = True
    mask[1, 3:6, 3:6] = False  # enclosed in its slice: filled
    mask[2, 4, 0:5] = False  # a notch reaching the slice's border: kept
    filled = fill_holes_per_slice(mask)
    assert filled[1].sum() == 25 and not filled[2, 4, 0:5].any() and filled[2].sum() == 25 - 3


def test_largest_component():
    mask = np.zeros((1, 1, 9), bool)
    mask[0, 0, [0, 1, 3, 4, 5]] = True
    assert np.flatnonzero(largest_component(mask)).tolist() == [3, 4, 5]


def test_bounding_box_is_the_box_of_the_voxels_grown_within_the_volume():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = np.zeros((9, 11, 13), dtype=bool)
        count = rng.integers(1, 6)
        mask[tuple(rng.integers(0, n, size=count) for n in mask.shape)] = True
        idx = np.nonzero(mask)
        expected = tuple(
            slice(max(0, int(i.min()) - m), min(n, int(i.max()) + m + 1)) for i, m, n in zip(idx, (1, 2, 3), mask.shape)
        )
        assert bounding_box(mask, (1, 2, 3), mask.shape) == expected
    assert bounding_box(np.zeros((4, 4, 4), dtype=bool), (1, 1, 1), (4, 4, 4)) is None

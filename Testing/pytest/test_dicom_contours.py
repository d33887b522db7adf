"""Planar contours <-> slice masks: even-odd filling and exact contour extraction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import polygon

from dicom_testdata import crop_case
from sparsert.io.dicom.contours import fill_even_odd, mask_contours


def _square(lo: float, hi: float) -> np.ndarray:
    return np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])


def test_nested_contours_alternate_between_filled_and_hole():
    # Pixel centres 1..7 inside the outer square, 3..5 in the hole, 4 in the island.
    mask = fill_even_odd([_square(0.5, 7.5), _square(2.5, 5.5), _square(3.5, 4.5)], (10, 10))
    expected = np.zeros((10, 10), dtype=bool)
    expected[1:8, 1:8] = True
    expected[3:6, 3:6] = False
    expected[4, 4] = True
    assert np.array_equal(mask, expected) and mask.sum() == 49 - 9 + 1


def test_separate_pieces_and_clipping_at_the_border():
    mask = fill_even_odd([_square(-3.5, 1.5), _square(6.5, 12.5)], (8, 8))
    expected = np.zeros((8, 8), dtype=bool)
    expected[0:2, 0:2] = True
    expected[7:8, 7:8] = True
    assert np.array_equal(mask, expected)


def test_centres_on_an_edge_belong_to_one_side_only():
    # Two squares sharing the edge x = 3 split the pixel centres on it without overlap or gap.
    left, right = fill_even_odd([_square(1, 3)], (6, 6)), fill_even_odd([np.array([[3, 1], [5, 1], [5, 3], [3, 3]])], (6, 6))
    both = fill_even_odd([np.array([[1, 1], [5, 1], [5, 3], [1, 3]])], (6, 6))
    assert not np.any(left & right)
    assert np.array_equal(left | right, both) and both.sum() == 4 * 2


def test_fill_matches_skimage_point_tests_on_random_polygons():
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = rng.integers(3, 15)
        # Non-integer vertices keep pixel centres off the edges, where the two rules may differ.
        vertices = rng.uniform(-4, 36, size=(n, 2)) + 0.123
        ours = fill_even_odd([vertices], (30, 32))
        rr, cc = polygon(vertices[:, 1], vertices[:, 0], (30, 32))
        reference = np.zeros((30, 32), dtype=bool)
        reference[rr, cc] = True
        assert np.array_equal(ours, reference)


def test_a_ring_gives_an_outer_contour_and_a_hole():
    ring = np.zeros((9, 9), dtype=bool)
    ring[1:8, 1:8] = True
    ring[3:6, 3:6] = False
    contours = mask_contours(ring)
    assert len(contours) == 2
    assert np.array_equal(fill_even_odd(contours, ring.shape), ring)


def test_straight_runs_are_dropped():
    rectangle = np.zeros((6, 7), dtype=bool)
    rectangle[1:4, 2:6] = True
    (contour,) = mask_contours(rectangle)
    # Contours at the 0.5 level cut each corner: two vertices per corner, none along the sides.
    assert len(contour) == 8
    assert contour[:, 0].min() == 1.5 and contour[:, 0].max() == 5.5
    assert contour[:, 1].min() == 0.5 and contour[:, 1].max() == 3.5


def test_contours_fill_back_to_the_mask_exactly(openkbp_nifti):
    case = crop_case(openkbp_nifti / "validation" / "pt_201")
    rng = np.random.default_rng(3)
    noisy = ndimage.binary_opening(rng.random((40, 45)) < 0.55)
    full = np.ones((5, 6), dtype=bool)  # touches every border
    slices = [seg.mask[k] for seg in case.structures.segments for k in range(seg.mask.shape[0]) if seg.mask[k].any()]
    for mask in [*slices, noisy, full]:
        assert np.array_equal(fill_even_odd(mask_contours(mask), mask.shape), mask)
    assert len(slices) > 200


@pytest.mark.parametrize("shape", [(0, 5), (4, 4)])
def test_empty_input_gives_empty_output(shape):
    assert not fill_even_odd([], shape).any()
    assert mask_contours(np.zeros(shape, dtype=bool)) == []

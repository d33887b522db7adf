"""Dice, surface distances (hand-computed and against MONAI) and number-of-clicks metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage

from sparsert.errors import InputError
from sparsert.metrics import average_surface_distance, clicks_to_reach, dice, hd95, noc_summary, surface_distances

# MONAI warns about its own deprecated internal argument; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")

SPACING = (2.0, 1.0, 0.5)  # numpy axis order, deliberately anisotropic


def _cube(shape, start) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    k, j, i = start
    mask[k : k + 3, j : j + 3, i : i + 3] = True
    return mask


def test_shifted_cubes_by_hand() -> None:
    # Two 3x3x3 cubes, the second shifted one voxel along axis 0 (2 mm). Each surface is the cube
    # minus its centre (26 voxels). From A's surface to B's: its far face (9 voxels) is 2 mm from B's
    # near face; A's voxel at B's centre is 0.5 mm (one axis-2 step) from B's surface; 16 lie on B's
    # surface (0 mm). B to A is the mirror image.
    a = _cube((7, 6, 6), (1, 1, 1))
    b = _cube((7, 6, 6), (2, 1, 1))
    assert dice(a, b) == pytest.approx(2 * 18 / 54)
    forward, backward = surface_distances(a, b, SPACING)
    expected = [0.0] * 16 + [0.5] + [2.0] * 9
    np.testing.assert_allclose(np.sort(forward), expected)
    np.testing.assert_allclose(np.sort(backward), expected)
    # 95th percentile of 26 sorted values: position 0.95 * 25 = 23.75, between two 2.0 values.
    assert hd95(a, b, SPACING) == pytest.approx(2.0)
    # Mean of both sets pooled: 2 * (9 * 2.0 + 0.5) / 52
    assert average_surface_distance(a, b, SPACING) == pytest.approx(37 / 52)
    # The same shift along axis 2 (0.5 mm): 10 voxels at 0.5 mm in each direction.
    c = _cube((7, 6, 6), (1, 1, 2))
    assert hd95(a, c, SPACING) == pytest.approx(0.5)
    assert average_surface_distance(a, c, SPACING) == pytest.approx(2 * 10 * 0.5 / 52)


def test_hd95_is_monai_max_of_directed_percentiles() -> None:
    # B is A plus two stray voxels 6 and 7 mm away (axis 1, 1 mm). B -> A: 26 zeros, 6, 7; its 95th
    # percentile sits at position 0.95 * 27 = 25.65, between 0 and 6 -> 3.9. A -> B is all zeros.
    # (medpy's pooled variant would give 0: position 0.95 * 53 = 50.35 of 52 zeros, 6, 7.)
    a = _cube((5, 12, 5), (1, 1, 1))
    b = a.copy()
    b[2, 9, 2] = b[2, 10, 2] = True
    assert hd95(a, b, SPACING) == pytest.approx(3.9)
    assert hd95(b, a, SPACING) == pytest.approx(3.9)
    assert hd95(a, b, SPACING) == pytest.approx(_monai(a, b, SPACING)[0], rel=1e-5)


def _monai(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float]:
    pred = torch.from_numpy(a[None, None].astype(np.float32))
    gt = torch.from_numpy(b[None, None].astype(np.float32))
    hd = compute_hausdorff_distance(pred, gt, include_background=True, percentile=95, spacing=list(spacing))
    asd = compute_average_surface_distance(pred, gt, include_background=True, symmetric=True, spacing=list(spacing))
    return float(hd[0, 0]), float(asd[0, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_shapes_agree_with_monai(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (14, 20, 24)
    spacing = (2.5, 1.0, 0.7)
    # Smoothed noise thresholded: irregular blobs, sometimes several pieces, touching the border.
    a = ndimage.gaussian_filter(rng.normal(size=shape), 2.0) > 0.05
    b = ndimage.gaussian_filter(rng.normal(size=shape), 2.0) > 0.05
    assert a.any() and b.any()
    hd_ref, asd_ref = _monai(a, b, spacing)
    assert hd95(a, b, spacing) == pytest.approx(hd_ref, rel=1e-5)
    assert average_surface_distance(a, b, spacing) == pytest.approx(asd_ref, rel=1e-5)


def test_empty_masks() -> None:
    empty = np.zeros((4, 4, 4), dtype=bool)
    cube = _cube((4, 4, 4), (0, 0, 0))
    assert dice(empty, empty) == 1.0
    assert hd95(empty, empty, SPACING) == 0.0 and average_surface_distance(empty, empty, SPACING) == 0.0
    assert dice(cube, empty) == 0.0
    assert math.isinf(hd95(cube, empty, SPACING)) and math.isinf(hd95(empty, cube, SPACING))
    assert math.isinf(average_surface_distance(cube, empty, SPACING))
    forward, backward = surface_distances(empty, cube, SPACING)
    assert forward.size == 0 and backward.size == 26 and np.isinf(backward).all()


def test_segmentation_inputs_are_checked() -> None:
    cube = _cube((4, 4, 4), (0, 0, 0))
    with pytest.raises(InputError, match=r"second mask has shape \(4, 4\), but the first mask"):
        dice(cube, cube[0])
    with pytest.raises(InputError, match="spacing"):
        hd95(cube, cube, (1.0, 1.0))
    with pytest.raises(InputError, match="positive"):
        hd95(cube, cube, (1.0, 0.0, 1.0))
    assert dice(cube.astype(np.uint8), cube) == 1.0


def test_clicks_to_reach() -> None:
    assert clicks_to_reach([0.5, 0.7, 0.86, 0.9], 0.85) == 2
    assert clicks_to_reach([0.9, 0.95], 0.85) == 0  # good before any click
    assert clicks_to_reach([0.5, 0.7, 0.86], 0.85, max_clicks=1) is None
    assert clicks_to_reach([0.5, 0.6], 0.85) is None
    assert clicks_to_reach([10.0, 5.0, 2.0], 3.0, higher_is_better=False) == 2  # e.g. HD95 in mm
    with pytest.raises(InputError, match="NaN"):
        clicks_to_reach([0.5, float("nan")], 0.85)
    with pytest.raises(InputError, match="non-empty"):
        clicks_to_reach([], 0.85)


def test_noc_summary_counts_failures_as_max_clicks() -> None:
    cases = [[0.5, 0.9], [0.9], [0.1, 0.2, 0.86]]
    summary = noc_summary(cases, [0.85, 0.95], max_clicks=20)
    at85, at95 = summary["thresholds"]
    # 0.85: 1, 0 and 2 clicks -> mean 1, no failures
    assert at85 == {"threshold": 0.85, "mean_noc": 1.0, "failures": 0, "failure_percent": 0.0}
    # 0.95: all three fail -> 20 each
    assert at95["mean_noc"] == 20.0 and at95["failures"] == 3 and at95["failure_percent"] == 100.0
    one_fail = noc_summary(cases, [0.85], max_clicks=1)["thresholds"][0]
    # the third case needs 2 clicks > 1: counted as 1 (max_clicks); mean (1 + 0 + 1) / 3
    assert one_fail["mean_noc"] == pytest.approx(2 / 3) and one_fail["failure_percent"] == pytest.approx(100 / 3)

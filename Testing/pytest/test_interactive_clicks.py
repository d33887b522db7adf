"""Click encoding (balls in mm, smoothing, anisotropic spacing) and click simulation (p proportional to d)."""

from __future__ import annotations

import numpy as np
import pytest

from sparsert.interactive.clicks import (
    Click, border_distance, click_kernel, click_maps, impose_clicks, interior_click, sample_click,
)


def test_unsmoothed_click_is_a_ball_in_millimetres_on_anisotropic_voxels():
    """Radius 3 mm, spacing (k, j, i) = (3, 1, 1) mm: in-plane a disc of radius 3 voxels (29 voxels),
    one voxel above and below (3 mm away), nothing two slices away (6 mm)."""
    positive, negative = click_maps((7, 13, 13), [Click((3, 6, 6), True)], (3.0, 1.0, 1.0), radius_mm=3.0, sigma_mm=0.0)
    assert not negative.any()
    assert set(np.unique(positive)) == {0.0, 1.0}
    assert positive.sum() == 31
    assert positive[3].sum() == 29
    assert positive[2, 6, 6] == positive[4, 6, 6] == 1.0 and positive[2].sum() == positive[4].sum() == 1
    assert positive[1].sum() == 0 and positive[5].sum() == 0
    assert positive[3, 6, 9] == 1.0 and positive[3, 8, 8] == 1.0  # 3 mm and sqrt(8) mm away
    assert positive[3, 7, 9] == 0.0 and positive[2, 7, 6] == 0.0  # sqrt(10) mm away


def test_smoothed_click_peaks_at_one_and_follows_physical_distance():
    kernel = click_kernel((1.0, 1.0, 1.0), 3.0, 2.0)
    c = tuple(n // 2 for n in kernel.shape)
    assert kernel[c] == kernel.max() == 1.0
    # Isotropic spacing: the same along every axis.
    assert np.allclose(kernel, kernel.transpose(1, 0, 2)) and np.allclose(kernel, kernel.transpose(2, 1, 0))
    # Anisotropic: 3 mm slices, so the map reaches three times fewer voxels along k than along i.
    aniso = click_kernel((3.0, 1.0, 1.0), 3.0, 2.0)
    k, j, i = (n // 2 for n in aniso.shape)
    reach_k = np.count_nonzero(aniso[:, j, i] > 0.5)
    reach_i = np.count_nonzero(aniso[k, j, :] > 0.5)
    # The 0.5 level lies near the ball's 3 mm edge: three voxels each side along i; along k the
    # neighbour slices, exactly on the edge, fall below it (2 mm smoothing over 3 mm slices).
    assert reach_k == 1 and reach_i == 7


def test_click_maps_take_the_maximum_of_overlapping_clicks():
    spacing = (1.0, 1.0, 1.0)
    a = Click((5, 5, 5), True)
    b = Click((5, 5, 7), True)
    both, _ = click_maps((11, 11, 13), [a, b], spacing, 3.0, 2.0)
    only_a, _ = click_maps((11, 11, 13), [a], spacing, 3.0, 2.0)
    only_b, _ = click_maps((11, 11, 13), [b], spacing, 3.0, 2.0)
    assert both.max() == 1.0
    assert np.array_equal(both, np.maximum(only_a, only_b))


def test_click_near_the_volume_edge_is_cut_not_shifted():
    maps, _ = click_maps((5, 5, 5), [Click((0, 0, 0), True)], (1.0, 1.0, 1.0), 2.0, 0.0)
    # The octant of a radius-2 ball inside the volume: offsets (a, b, c) >= 0 with a^2 + b^2 + c^2 <= 4.
    assert maps.sum() == 11 and maps[0, 0, 0] == 1.0


def _box_region(shape=(9, 9, 9), lo=1, size=7):
    mask = np.zeros(shape, bool)
    mask[lo:lo + size, lo:lo + size, lo:lo + size] = True
    return mask


def test_imposed_clicks_set_their_balls_later_clicks_winning_and_stay_in_the_box():
    """Radius 2 mm on (k, j, i) = (2, 1, 1) mm voxels; the box holds slices 2..7 of a 10^3 volume."""
    box = (slice(2, 8), slice(0, 10), slice(0, 10))
    values = np.full((6, 10, 10), 0.3, np.float32)
    clicks = [Click((5, 5, 5), True), Click((5, 5, 7), False), Click((0, 0, 0), True)]
    out = impose_clicks(values, box, clicks, (2.0, 1.0, 1.0), radius_mm=2.0)
    assert np.array_equal(values, np.full((6, 10, 10), 0.3, np.float32))  # the input is left as it was
    assert out[3, 5].tolist() == pytest.approx([0.3, 0.3, 0.3, 1, 1, 0, 0, 0, 0, 0])  # i 3..7 then 5..9, the later wins
    assert out[:, 5, 5].tolist() == pytest.approx([0.3, 0.3, 1, 0, 1, 0.3])  # k 4..6 (2 mm), k 5 (i 2 mm off)
    assert out[0].max() == pytest.approx(0.3)  # the click on slice 0 reaches slice 1 only, outside the box
    assert np.count_nonzero(out != values) == 2 * (13 + 1 + 1) - 5  # two balls of 15 voxels sharing 5


def test_border_distance_counts_the_volume_edge_as_border():
    # 7^3 box: distances 1..4 mm from the faces; the centre is 4 mm from the nearest outside voxel.
    d = border_distance(_box_region(), (1.0, 1.0, 1.0))
    assert d[4, 4, 4] == 4.0 and d[1, 1, 1] == 1.0 and d[0, 0, 0] == 0.0
    full = border_distance(np.ones((5, 5, 5), bool), (1.0, 1.0, 1.0))
    assert full[2, 2, 2] == 3.0 and full[0, 2, 2] == 1.0


def test_sampled_clicks_follow_p_proportional_to_distance():
    """A 7^3 false-negative box: shells at distance 1, 2, 3, 4 mm hold 218, 98, 26, 1 voxels, so
    p(d) = d * n_d / 496 = 0.439, 0.395, 0.157, 0.008 (uniform would give 0.636 for d = 1,
    exp(d) - 1 weighting 0.24)."""
    truth = _box_region()
    prediction = np.zeros_like(truth)
    rng = np.random.default_rng(0)
    counts = np.zeros(5)
    n = 4000
    for _ in range(n):
        click = sample_click(prediction, truth, (1.0, 1.0, 1.0), rng)
        assert click.positive and truth[click.kji]
        offsets = np.array(click.kji) - 1
        counts[int(np.min(np.minimum(offsets + 1, 7 - offsets)))] += 1
    expected = np.array([0, 218, 196, 78, 4]) / 496
    assert np.allclose(counts / n, expected, atol=0.03)


def test_false_positives_give_negative_clicks():
    prediction = _box_region()
    rng = np.random.default_rng(1)
    clicks = [sample_click(prediction, np.zeros_like(prediction), (1.0, 1.0, 1.0), rng) for _ in range(20)]
    assert all(not c.positive and prediction[c.kji] for c in clicks)


def test_interior_click_is_the_most_interior_error_voxel():
    truth = np.zeros((20, 20, 20), bool)
    prediction = np.zeros_like(truth)
    truth[1:8, 1:8, 1:8] = True  # false negatives, centre 4 mm inside
    prediction[10:13, 10:13, 10:13] = True  # false positives, centre 2 mm inside
    click = interior_click(prediction, truth, (1.0, 1.0, 1.0))
    assert click == Click((4, 4, 4), True)
    prediction[9:18, 9:18, 9:18] = True  # now a 9^3 false positive: centre 5 mm inside
    assert interior_click(prediction, truth, (1.0, 1.0, 1.0)) == Click((13, 13, 13), False)
    assert interior_click(truth, truth, (1.0, 1.0, 1.0)) is None


def test_interior_click_uses_millimetres_and_breaks_ties_in_array_order():
    """A 5 x 9 x 9 box with 3 mm slices: slices k = 1, 2, 3 are at least 6 mm from the top and
    bottom, more than the 5 mm to the side faces, so they tie at 5 mm; the first is taken."""
    truth = np.zeros((7, 11, 11), bool)
    truth[1:6, 1:10, 1:10] = True
    click = interior_click(np.zeros_like(truth), truth, (3.0, 1.0, 1.0))
    assert click == Click((2, 5, 5), True)

"""DVH curves and read-outs: hand-computed values with numpy.percentile's linear rule."""

from __future__ import annotations

import numpy as np
import pytest

from sparsert.errors import InputError
from sparsert.io.volume import read_image
from sparsert.metrics import d_cc, dose_at_volume, dvh_curve, dvh_curve_cc, mean_dose, volume_at_dose

ROI_DOSES = [70.0, 10.0, 40.0, 100.0, 20.0, 90.0, 30.0, 60.0, 50.0, 80.0]  # sorted: 10, 20, ..., 100


@pytest.fixture()
def tiny():
    """A 4x4x4 dose with a 10-voxel structure holding ROI_DOSES; 500 Gy elsewhere must never count."""
    dose = np.full((4, 4, 4), 500.0)
    mask = np.zeros((4, 4, 4), dtype=bool)
    index = np.unravel_index(np.arange(3, 63, 6), mask.shape)
    mask[index] = True
    dose[index] = ROI_DOSES
    return dose, mask


def test_dose_at_volume_linear_percentiles(tiny) -> None:
    dose, mask = tiny
    # Sorted v[0..9] = 10..100; numpy.percentile(q) is at position p = q/100 * 9, interpolated linearly.
    # D95 = percentile 5: p = 0.45 -> 10 + 0.45 * 10 = 14.5
    assert dose_at_volume(dose, mask, 95) == pytest.approx(14.5)
    # D99 = percentile 1: p = 0.09 -> 10.9
    assert dose_at_volume(dose, mask, 99) == pytest.approx(10.9)
    # D1 = percentile 99: p = 8.91 -> 90 + 0.91 * 10 = 99.1
    assert dose_at_volume(dose, mask, 1) == pytest.approx(99.1)
    # D50 = median: p = 4.5 -> 55; D100 = minimum, D0 = maximum.
    assert dose_at_volume(dose, mask, 50) == pytest.approx(55.0)
    assert dose_at_volume(dose, mask, 100) == 10.0
    assert dose_at_volume(dose, mask, 0) == 100.0
    assert mean_dose(dose, mask) == pytest.approx(55.0)


def test_d_cc_follows_openkbp_voxel_rule(tiny) -> None:
    dose, mask = tiny
    # 30 mm3 voxels: round(100 / 30) = 3 voxels; q = 100 - 3/10 * 100 = 70; p = 6.3 -> 70 + 0.3 * 10 = 73
    assert d_cc(dose, mask, 0.1, 30.0) == pytest.approx(73.0)
    # 40 mm3: 100 / 40 = 2.5 rounds half to even -> 2 voxels; q = 80; p = 7.2 -> 82
    assert d_cc(dose, mask, 0.1, 40.0) == pytest.approx(82.0)
    # 200 mm3: round(0.5) = 0 -> at least 1 voxel; q = 90; p = 8.1 -> 91
    assert d_cc(dose, mask, 0.1, 200.0) == pytest.approx(91.0)
    # 0.05 cc with 10 mm3 voxels: 5 voxels; q = 50 -> 55
    assert d_cc(dose, mask, 0.05, 10.0) == pytest.approx(55.0)
    # 0.1 cc of 5 mm3 voxels is 20 voxels, more than the structure: q clipped to 0 -> minimum.
    assert d_cc(dose, mask, 0.1, 5.0) == 10.0


def test_volume_at_dose(tiny) -> None:
    dose, mask = tiny
    assert volume_at_dose(dose, mask, 50) == pytest.approx(60.0)  # 50, 60, ..., 100
    assert volume_at_dose(dose, mask, 55) == pytest.approx(50.0)
    assert volume_at_dose(dose, mask, 100) == pytest.approx(10.0)
    assert volume_at_dose(dose, mask, 100.5) == 0.0
    assert volume_at_dose(dose, mask, 0) == 100.0
    # 6 voxels of 30 mm3 = 180 mm3 = 0.18 cc
    assert volume_at_dose(dose, mask, 50, voxel_volume_mm3=30.0, relative=False) == pytest.approx(0.18)
    with pytest.raises(InputError, match="voxel_volume_mm3"):
        volume_at_dose(dose, mask, 50, relative=False)


def test_dvh_curve_by_hand(tiny) -> None:
    dose, mask = tiny
    levels, percent = dvh_curve(dose, mask, bin_width_gy=10.0)
    np.testing.assert_allclose(levels, np.arange(0, 101, 10))
    np.testing.assert_allclose(percent, [100, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10])
    levels, cc = dvh_curve_cc(dose, mask, 30.0, bin_width_gy=10.0, max_dose=120.0)
    assert levels[-1] == pytest.approx(120.0)
    np.testing.assert_allclose(cc[[0, 5, 11, 12]], [0.3, 0.18, 0.0, 0.0])


def test_dvh_curve_on_real_structure(openkbp_nifti) -> None:
    case = openkbp_nifti / "validation" / "pt_201"
    dose = read_image(case / "dose.nii.gz").array
    ptv = read_image(case / "structures" / "PTV70.nii.gz").array
    levels, percent = dvh_curve(dose, ptv, bin_width_gy=0.5)
    assert levels[0] == 0.0 and percent[0] == 100.0
    assert np.all(np.diff(percent) <= 0)
    assert levels[-1] >= dose[ptv > 0].max() > levels[-2]
    for i in range(0, levels.size, 17):
        assert percent[i] == pytest.approx(volume_at_dose(dose, ptv, levels[i]))
    # The D95 level is where the curve crosses 95 %.
    d95 = dose_at_volume(dose, ptv, 95)
    assert volume_at_dose(dose, ptv, d95 - 0.01) >= 95.0 >= volume_at_dose(dose, ptv, d95 + 0.01)


def test_bad_inputs_name_the_problem(tiny) -> None:
    dose, mask = tiny
    bad = dose.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="dose contains 1 NaN"):
        dose_at_volume(bad, mask, 95)
    with pytest.raises(InputError, match=r"structure mask has shape \(4, 4\)"):
        mean_dose(dose, mask[0])
    with pytest.raises(InputError, match="values other than 0 and 1"):
        mean_dose(dose, mask * 2)
    assert mean_dose(dose, mask.astype(np.uint8)) == pytest.approx(55.0)
    with pytest.raises(InputError, match="empty"):
        d_cc(dose, np.zeros_like(mask), 0.1, 30.0)
    with pytest.raises(InputError, match="0..100"):
        dose_at_volume(dose, mask, 101)
    with pytest.raises(InputError, match="cc must be a positive"):
        d_cc(dose, mask, 0, 30.0)

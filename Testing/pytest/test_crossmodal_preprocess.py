"""Cross-modal inputs: MR onto the CT grid through physical space (and a transform), normalisation, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from sparsert.crossmodal.preprocess import PreprocessConfig, mr_on_grid, prepare_inputs, read_transform
from sparsert.data.sts import read_sts_case, read_sts_masks
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume

# STS_019: the MR has 1.17 mm pixels, the CT 0.98 mm, and different origins and fields of view.
CASE = "STS_019"


@pytest.fixture(scope="module")
def case(sts_dir):
    return read_sts_case(sts_dir / CASE)


def _lps_points(geometry: Geometry) -> np.ndarray:
    """LPS coordinates (3, D, H, W) of every voxel centre."""
    k, j, i = np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij")
    ijk = np.stack([i, j, k, np.ones_like(i)]).reshape(4, -1).astype(float)
    return (geometry.ijk_to_lps() @ ijk)[:3].reshape((3,) + geometry.shape)


def _interior(covered: np.ndarray) -> np.ndarray:
    """Voxels a full voxel inside the MR's field of view (ITK clamps neighbours at its border)."""
    return ndimage.binary_erosion(covered, np.ones((3, 3, 3)))


def _linear_field(points: np.ndarray) -> np.ndarray:
    """A made-up intensity that is linear in position, so linear interpolation reproduces it exactly."""
    x, y, z = points
    return (0.5 * x - 0.25 * y + 2.0 * z + 100.0).astype(np.float32)


def test_mr_reaches_the_ct_grid_through_physical_space(case):
    ct, mr = case.images["ct"], case.images["mr"]
    assert not mr.geometry.matches(ct.geometry)
    field_mr = mr.with_array(_linear_field(_lps_points(mr.geometry)))
    on_ct, covered = mr_on_grid(field_mr, ct.geometry)
    expected = _linear_field(_lps_points(ct.geometry))
    # Every CT voxel the MR covers holds the value of the MR at the same physical point.
    inner = _interior(covered)
    assert inner.mean() > 0.3
    assert np.allclose(on_ct.array[inner], expected[inner], atol=1e-3)
    # A known point: the MR voxel (i, j, k) = (40, 50, 20) at its LPS position, found on the CT grid.
    point = (mr.geometry.ijk_to_lps() @ np.array([40, 50, 20, 1.0]))[:3]
    i, j, k = np.round(np.linalg.solve(ct.geometry.ijk_to_lps(), np.append(point, 1.0))[:3]).astype(int)
    ct_point = (ct.geometry.ijk_to_lps() @ np.array([i, j, k, 1.0]))[:3]
    assert on_ct.array[k, j, i] == pytest.approx(_linear_field(ct_point.reshape(3, 1, 1, 1)).item(), abs=1e-3)


def test_mr_mask_lands_on_the_ct_mask(sts_dir):
    # STS_010: tumour drawn alike on both; read by array index instead, the MR mask lies tens of voxels off.
    other = read_sts_case(sts_dir / "STS_010")
    masks = read_sts_masks(sts_dir / "STS_010")
    mr_mask = masks["mr"].with_array(masks["mr"].array.astype(np.float32))
    on_ct, _ = mr_on_grid(mr_mask, other.geometry)
    ct_mask = other.structures["GTV_Mass"].mask
    moved = on_ct.array >= 0.5
    assert 2 * (moved & ct_mask).sum() / (moved.sum() + ct_mask.sum()) > 0.95


def test_transform_file_moves_the_mr(case, tmp_path):
    ct, mr = case.images["ct"], case.images["mr"]
    field_mr = mr.with_array(_linear_field(_lps_points(mr.geometry)))
    shift = (4.0, -3.0, 6.5)  # CT point p is MR point p + shift
    path = tmp_path / "ct_to_mr.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3, shift), str(path))
    on_ct, covered = mr_on_grid(field_mr, ct.geometry, read_transform(path))
    expected = _linear_field(_lps_points(ct.geometry) + np.reshape(shift, (3, 1, 1, 1)))
    inner = _interior(covered)
    assert inner.mean() > 0.3
    assert np.allclose(on_ct.array[inner], expected[inner], atol=1e-3)


def test_inputs_on_the_working_grid(case):
    config = PreprocessConfig()
    inputs = prepare_inputs(case.images["ct"], case.images["mr"], config)
    assert inputs.geometry.spacing == config.spacing_mm
    assert inputs.geometry.direction == case.geometry.direction
    assert inputs.ct.shape == inputs.mr.shape == inputs.geometry.shape
    assert 0.0 <= inputs.ct.min() and inputs.ct.max() <= 1.0
    z = inputs.mr[inputs.mr_valid & inputs.body]
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2
    assert (inputs.mr[~inputs.mr_valid] == 0).all()
    # The region is where the MR covers the body: every voxel of it lies inside the MR box.
    lo, hi = case.images["mr"].geometry.physical_bounds()
    corner = inputs.geometry.ijk_to_lps() @ np.array([0, 0, 0, 1.0])
    assert np.all(corner[:3] >= lo - 1.0) and np.all(corner[:3] <= hi + 1.0)


def test_intensity_scales(case):
    config = PreprocessConfig()
    ct, mr = case.images["ct"], case.images["mr"]
    reference = prepare_inputs(ct, mr, config)
    # MR intensities have no unit: a scanner writing values near 1e6 gives the same inputs.
    huge = prepare_inputs(ct, mr.with_array(mr.array.astype(np.float64) * 1000.0 + 5e5), config)
    assert np.allclose(huge.mr, reference.mr, atol=1e-3)
    # A CT stored with the +1024 offset is recognised.
    offset = prepare_inputs(ct.with_array(ct.array.astype(np.float32) + 1024.0), mr, config)
    assert np.allclose(offset.ct, reference.ct, atol=1e-4)


@pytest.mark.parametrize("scale", [1e-3, 1000.0])
def test_ct_not_in_hu(case, scale):
    ct = case.images["ct"]
    with pytest.raises(InputError, match=r"planning\.nrrd: values .* are not Hounsfield units"):
        prepare_inputs(ct.with_array(ct.array * scale), case.images["mr"], PreprocessConfig(), ct_name="planning.nrrd")


def test_mr_without_contrast(case):
    mr = case.images["mr"]
    with pytest.raises(InputError, match=r"t1\.nrrd: intensity is constant over the body"):
        prepare_inputs(case.images["ct"], mr.with_array(np.full(mr.array.shape, 7.0)), PreprocessConfig(), mr_name="t1.nrrd")


def test_ct_and_mr_swapped(case):
    # The MR passes for a CT stored with an offset (values 0..1800), but the CT in the MR's place holds air.
    with pytest.raises(InputError, match=r"ct\.nrrd, given as the MR, looks like a CT .*swapped"):
        prepare_inputs(case.images["mr"], case.images["ct"], PreprocessConfig(), ct_name="t1.nrrd", mr_name="ct.nrrd")


def test_mr_not_overlapping_the_ct(case):
    mr = case.images["mr"]
    far = Volume(mr.array, Geometry(mr.geometry.shape, mr.geometry.spacing, (5000.0, 0.0, 0.0), mr.geometry.direction))
    with pytest.raises(InputError, match=r"t1\.nrrd: .*does not overlap.*register the MR to the CT"):
        prepare_inputs(case.images["ct"], far, PreprocessConfig(), mr_name="t1.nrrd")


def test_mr_covering_no_body(case):
    ct = case.images["ct"]
    # A small MR in the last corner of the CT box, where there is only air.
    assert ct.array[-3:, -10:, -10:].max() < -500
    k, j, i = np.array(ct.geometry.shape) - (3, 10, 10)
    origin = tuple((ct.geometry.ijk_to_lps() @ np.array([i, j, k, 1.0]))[:3])
    corner = Volume(np.random.default_rng(0).random((3, 10, 10)).astype(np.float32),
                    Geometry((3, 10, 10), ct.geometry.spacing, origin, ct.geometry.direction))
    with pytest.raises(InputError, match=r"t1\.nrrd: covers none of the body in ct\.nrrd"):
        prepare_inputs(ct, corner, PreprocessConfig(), ct_name="ct.nrrd", mr_name="t1.nrrd")


def test_ct_only_inputs(case):
    inputs = prepare_inputs(case.images["ct"], None, PreprocessConfig())
    assert np.array_equal(inputs.mr, inputs.ct) and inputs.mr_valid.all()
    with_mr = prepare_inputs(case.images["ct"], case.images["mr"], PreprocessConfig())
    # Without an MR the region is the whole body, larger than the MR's field of view.
    assert np.prod(inputs.geometry.shape) > np.prod(with_mr.geometry.shape)


def test_bad_transform_file(tmp_path):
    path = tmp_path / "t.tfm"
    path.write_text("not a transform\n")
    with pytest.raises(InputError, match=r"t\.tfm: not a readable transform"):
        read_transform(path)
    with pytest.raises(InputError, match=r"missing\.tfm: transform file not found"):
        read_transform(tmp_path / "missing.tfm")

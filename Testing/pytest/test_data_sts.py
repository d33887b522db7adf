"""Soft-tissue sarcoma cases: modalities on their own grids, brought together through physical space."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sparsert.data.datasets import open_dataset
from sparsert.data.sts import read_sts_case, read_sts_masks
from sparsert.errors import InputError


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_native_grids_and_gtv(sts_dir):
    case = read_sts_case(sts_dir / "STS_001")
    assert list(case.images) == ["ct", "mr", "pet"]
    for name, prefix in (("ct", "CT"), ("mr", "MR_T1"), ("pet", "PET")):
        image = sitk.ReadImage(str(sts_dir / "STS_001" / f"{prefix}_image.nii.gz"))
        assert case.images[name].geometry.size == image.GetSize()
        assert np.allclose(case.images[name].geometry.origin, image.GetOrigin())
    # The modalities differ in grid and field of view: PET voxels are about 4.7 mm, CT/MR about 1 mm.
    assert case.images["pet"].geometry.spacing[0] > 4 * case.images["ct"].geometry.spacing[0]
    assert case.images["mr"].geometry.size != case.images["ct"].geometry.size
    assert case.structures.names == ["GTV_Mass"]
    assert case.structures.geometry.matches(case.images["ct"].geometry)
    ct_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(sts_dir / "STS_001" / "CT_mask.nii.gz"))) != 0
    assert np.array_equal(case.structures["GTV_Mass"].mask, ct_mask)


def test_on_ct_grid_goes_through_physical_space(sts_dir):
    case = read_sts_case(sts_dir / "STS_010", on_ct_grid=True)
    grid = case.geometry
    assert all(v.geometry.matches(grid) for v in case.images.values())
    gtv = case.structures["GTV_Mass"].mask
    # The tumour drawn on MR and PET lands on the CT tumour once resampled through physical space;
    # reading the MR mask array by index instead would put it tens of voxels away.
    assert _dice(gtv, case.structures["GTV_Mass_MR_T1"].mask) > 0.95
    assert _dice(gtv, case.structures["GTV_Mass_PET"].mask) > 0.85
    # PET uptake is higher in the tumour than around it.
    pet = case.images["pet"].array
    assert pet[gtv].mean() > 2 * pet[~gtv & (pet > 0)].mean()


def test_masks_on_their_own_grids(sts_dir):
    masks = read_sts_masks(sts_dir / "STS_010")
    pet = sitk.ReadImage(str(sts_dir / "STS_010" / "PET_mask.nii.gz"))
    assert masks["pet"].geometry.size == pet.GetSize()
    assert masks["pet"].array.dtype == bool


def test_dataset_detection(sts_dir):
    dataset = open_dataset(sts_dir)
    assert dataset.format == "sts"
    assert len(dataset) >= 20 and dataset.case_ids()[0] == "STS_001"
    assert open_dataset(f"sts:{sts_dir / 'STS_002'}").case_ids() == ["STS_002"]


def test_missing_ct(tmp_path):
    (tmp_path / "STS_099").mkdir()
    with pytest.raises(InputError, match=r"CT_image\.nii\.gz: file not found"):
        read_sts_case(tmp_path / "STS_099")

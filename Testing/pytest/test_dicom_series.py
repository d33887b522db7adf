"""Reading a CT series folder: values, geometry and UIDs, and the series that must be refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from dicom_testdata import HU_OFFSET, crop_case, write_ct_series
from sparsert.errors import InputError
from sparsert.io.dicom.series import read_dicom_series
from sparsert.io.volume import read_image


@pytest.fixture(scope="module")
def case(openkbp_nifti):
    return crop_case(openkbp_nifti / "validation" / "pt_201")


@pytest.fixture(scope="module")
def ct(case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("series") / "ct"
    return folder, write_ct_series(case.ct, folder)


def test_series_values_geometry_and_uids(case, ct):
    folder, uids = ct
    series = read_dicom_series(folder)
    # Slices are stacked along the slice normal (+z); the NIfTI crop runs head to feet.
    assert np.array_equal(series.volume.array, case.ct.array[::-1].astype(np.int64) - HU_OFFSET)
    g = series.geometry
    assert g.shape == (40, 80, 80)
    assert np.allclose(g.spacing, (5.422, 5.422, 3.0), atol=1e-4)
    assert g.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    # The first slice is the crop's last: NIfTI origin (0, 0, 0), voxel (24, 24, 79) at z = -3 * 79.
    assert np.allclose(g.origin, (24 * 5.422, 24 * 5.422, -237.0), atol=1e-3)
    assert series.study_uid == uids["study"] and series.series_uid == uids["series"]
    assert series.frame_of_reference_uid == uids["frame"]
    assert [p.name for p in series.files[:2]] == ["CT.039.dcm", "CT.038.dcm"]
    assert len(set(series.sop_instance_uids)) == 40


def test_read_image_reads_the_series_and_ignores_other_files(ct, tmp_path):
    folder, _ = ct
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    shutil.copy(get_testdata_file("rtdose.dcm", download=False), mixed / "RD.dcm")
    (mixed / "notes.txt").write_text("not DICOM")
    assert np.array_equal(read_image(mixed).array, read_dicom_series(folder).volume.array)


def test_missing_slice_is_refused(case, tmp_path):
    write_ct_series(case.ct, tmp_path, skip=(17,))
    expected = r"not evenly spaced \(missing slices\?\): 6\.000 mm between CT\.018\.dcm and CT\.016\.dcm"
    with pytest.raises(InputError, match=expected):
        read_image(tmp_path)


def test_mixed_frames_of_reference_are_refused(case, tmp_path):
    write_ct_series(case.ct, tmp_path, other_frame_at=5)
    with pytest.raises(InputError, match=f"{tmp_path}: series .* mixes frames of reference"):
        read_dicom_series(tmp_path)


def test_several_series_are_listed_and_one_can_be_chosen(case, ct, tmp_path):
    folder, uids = ct
    shutil.copytree(folder, tmp_path, dirs_exist_ok=True)
    shifted = case.ct.with_array(case.ct.array + 100)
    other = write_ct_series(shifted, tmp_path, study_uid=uids["study"], frame_uid=uids["frame"], prefix="CT2")
    with pytest.raises(InputError, match="holds 2 image series") as error:
        read_image(tmp_path)
    assert uids["series"] in str(error.value) and other["series"] in str(error.value)
    chosen = read_dicom_series(tmp_path, series_uid=other["series"])
    assert np.array_equal(chosen.volume.array, shifted.array[::-1].astype(np.int64) - HU_OFFSET)
    with pytest.raises(InputError, match="no image series 1.2.3"):
        read_dicom_series(tmp_path, series_uid="1.2.3")


def test_folders_without_a_3d_series_are_refused(case, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("hello")
    with pytest.raises(InputError, match="holds no DICOM image series"):
        read_image(tmp_path / "empty")
    write_ct_series(case.ct, tmp_path / "one", skip=tuple(range(1, 40)))
    with pytest.raises(InputError, match="single slice"):
        read_image(tmp_path / "one")

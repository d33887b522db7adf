"""OpenKBP challenge CSVs: identical to the NIfTI copies, anatomically oriented; submission files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from sparsert.data.openkbp_csv import read_openkbp_case, read_openkbp_prediction, write_openkbp_prediction
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume

PATIENTS = ["pt_201", "pt_202", "pt_203"]


@pytest.mark.parametrize("patient", PATIENTS)
def test_csv_case_equals_nifti_copy(patient, openkbp_csv, openkbp_nifti):
    case = read_openkbp_case(openkbp_csv / patient)
    nifti = openkbp_nifti / "validation" / patient
    expected = {
        "ct": sitk.ReadImage(str(nifti / "ct.nii.gz")),
        "dose": sitk.ReadImage(str(nifti / "dose.nii.gz")),
        "possible_dose_mask": sitk.ReadImage(str(nifti / "possible_dose_mask.nii.gz")),
    }
    got = {"ct": case.images["ct"], "dose": case.dose, "possible_dose_mask": case.possible_dose_mask}
    for name, image in expected.items():
        volume = got[name]
        assert np.array_equal(volume.array, sitk.GetArrayFromImage(image)), name
        assert volume.geometry.size == image.GetSize()
        # NIfTI stores geometry as float32.
        assert np.allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-5)
        assert np.allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-5)
        assert np.allclose(volume.geometry.direction, image.GetDirection(), atol=1e-6)
    assert case.images["ct"].array.dtype == np.int16
    assert case.dose.array.dtype == np.float32
    assert case.possible_dose_mask.array.dtype == bool
    structure_files = sorted((nifti / "structures").glob("*.nii.gz"))
    assert case.structures.names == [f.name[: -len(".nii.gz")] for f in structure_files]
    for f in structure_files:
        mask = case.structures[f.name[: -len(".nii.gz")]].mask
        assert mask.dtype == bool
        assert np.array_equal(mask, sitk.GetArrayFromImage(sitk.ReadImage(str(f))) != 0), f.name
    assert case.warnings == []


def test_first_csv_row_lands_where_the_axis_mapping_says(openkbp_csv):
    case = read_openkbp_case(openkbp_csv / "pt_201")
    # ct.csv row "630302,810.0": 630302 = 38*128^2 + 60*128 + 30 -> challenge axes (38, 60, 30);
    # i = axis 1, j = axis 0, k = axis 2 -> numpy [k, j, i] = [30, 38, 60].
    assert case.images["ct"].array[30, 38, 60] == 810
    assert case.geometry.spacing == (5.422, 5.422, 3.0)
    assert case.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_anatomical_orientation(openkbp_csv):
    seg = read_openkbp_case(openkbp_csv / "pt_201").structures
    names = ("RightParotid", "LeftParotid", "Mandible", "SpinalCord", "Brainstem")
    centre = {name: np.argwhere(seg[name].mask).mean(axis=0) for name in names}
    # [k, j, i] with LPS directions +x (left) along i, +y (posterior) along j, -z (inferior) along k.
    assert centre["RightParotid"][2] < centre["LeftParotid"][2]
    assert centre["Mandible"][1] < centre["SpinalCord"][1]
    assert centre["Brainstem"][0] < centre["SpinalCord"][0]


def test_prediction_round_trip_and_format(tmp_path, openkbp_csv):
    patient = openkbp_csv / "pt_201"
    case = read_openkbp_case(patient)
    path = write_openkbp_prediction(case.dose, tmp_path / "pt_201.csv")
    back = read_openkbp_prediction(path, case.geometry)
    assert back.array.dtype == np.float32
    assert np.array_equal(back.array, case.dose.array)
    lines = path.read_text().splitlines()
    assert lines[0] == ",data"
    # As the challenge writes submissions: the positive voxels of the reference dose.csv, in index order.
    reference = np.loadtxt(patient / "dose.csv", delimiter=",", skiprows=1)
    positive = reference[reference[:, 1] > 0]
    written = np.array([line.split(",") for line in lines[1:]], dtype=np.float64)
    assert np.array_equal(written[:, 0], positive[:, 0])
    assert np.array_equal(written[:, 1].astype(np.float32), positive[:, 1].astype(np.float32))
    with pytest.raises(InputError, match="already exists"):
        write_openkbp_prediction(case.dose, path)


def test_prediction_writer_refuses_bad_doses(tmp_path, openkbp_csv):
    case = read_openkbp_case(openkbp_csv / "pt_202")
    negative = case.dose.array.copy()
    negative[64, 64, 64] = -0.5
    with pytest.raises(InputError, match="negative"):
        write_openkbp_prediction(case.dose.with_array(negative), tmp_path / "a.csv")
    g = case.geometry
    small = Volume(case.dose.array[:64], Geometry((64, 128, 128), g.spacing, g.origin, g.direction))
    with pytest.raises(InputError, match="not on an OpenKBP patient grid"):
        write_openkbp_prediction(small, tmp_path / "b.csv")


def test_bad_csv_inputs(tmp_path, openkbp_csv):
    patient = tmp_path / "pt_1"
    patient.mkdir()
    (patient / "voxel_dimensions.csv").write_text("3.0\n3.0\n2.5\n")
    with pytest.raises(InputError, match=r"ct\.csv: file not found"):
        read_openkbp_case(patient)
    (patient / "ct.csv").write_bytes(b"\x89garbage\x00\xff" * 20)
    with pytest.raises(InputError, match=r"ct\.csv"):
        read_openkbp_case(patient)
    (patient / "ct.csv").write_text(",data\n5,100.0\n7,200.0\n")
    (patient / "dose.csv").write_text(",data\n5,1.5\n7,nan\n")
    with pytest.raises(InputError, match=r"dose\.csv: contains NaN"):
        read_openkbp_case(patient)
    (patient / "dose.csv").write_text(",data\n5,1.5\n2097152,2.0\n")
    with pytest.raises(InputError, match=r"dose\.csv: indices must be"):
        read_openkbp_case(patient)
    (patient / "dose.csv").unlink()
    (patient / "PTV70.csv").write_text(",data\n")
    case = read_openkbp_case(patient)
    assert case.dose is None
    assert case.images["ct"].geometry.spacing == (3.0, 3.0, 2.5)
    assert case.images["ct"].array.sum() == 300
    assert case.warnings and "'PTV70' is empty" in case.warnings[0]
    (patient / "voxel_dimensions.csv").write_text("3.0\n0\n")
    with pytest.raises(InputError, match=r"voxel_dimensions\.csv: expected three positive"):
        read_openkbp_case(patient)

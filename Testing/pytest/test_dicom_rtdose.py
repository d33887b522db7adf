"""RT Dose: written from a real dose, read back within the scaling error, pydicom's test file, bad input."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicom_testdata import PATIENT_ID, crop_case, save, write_ct_series
from sparsert.errors import InputError
from sparsert.io.dicom.rtdose import write_rtdose
from sparsert.io.dicom.series import read_dicom_series
from sparsert.io.dose_io import read_dose, write_dose
from sparsert.io.volume import Geometry, Volume

# pydicom's rtdose.dcm references a plan UID with a leading zero in a component, which pydicom flags on reading.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")


@pytest.fixture(scope="module")
def case(openkbp_nifti):
    return crop_case(openkbp_nifti / "validation" / "pt_201")


@pytest.fixture(scope="module")
def ct(case, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rtdose") / "ct"
    uids = write_ct_series(case.ct, folder)
    return read_dicom_series(folder), uids


@pytest.mark.parametrize("bits", [32, 16])
def test_round_trip_within_half_the_grid_scaling(case, ct, tmp_path, bits):
    series, _ = ct
    path = write_rtdose(case.dose, tmp_path / "RD.dcm", series, bits=bits)
    ds = pydicom.dcmread(path)
    scaling = float(ds.DoseGridScaling)
    top = float(case.dose.array.max())
    # The largest dose uses the full pixel range: scaling = max / (2^bits - 1), rounded up.
    assert top / (2**bits - 1) <= scaling <= top / (2**bits - 1) * (1 + 1e-8)
    assert (2**bits - 1) * (1 - 1e-8) <= ds.pixel_array.max() <= 2**bits - 1 and ds.BitsAllocated == bits
    back = read_dose(path, series)
    assert back.geometry.matches(series.geometry)
    # The crop runs head to feet, the series along +z.
    error = np.abs(back.array - case.dose.array[::-1].astype(np.float64))
    assert error.max() <= scaling / 2 * (1 + 1e-6)


def test_rtdose_attributes(case, ct, tmp_path):
    series, uids = ct
    path = write_dose(case.dose, tmp_path / "RD.dcm", reference_ct_folder=series.folder)
    ds = pydicom.dcmread(path)
    assert (ds.Modality, ds.SOPClassUID) == ("RTDOSE", "1.2.840.10008.5.1.4.1.1.481.2")
    assert (ds.DoseUnits, ds.DoseType, ds.DoseSummationType) == ("GY", "PHYSICAL", "PLAN")
    assert ds.StudyInstanceUID == uids["study"] and ds.FrameOfReferenceUID == uids["frame"]
    assert ds.PatientID == PATIENT_ID and ds.SeriesInstanceUID != uids["series"]
    assert "not a clinical plan" in ds.SeriesDescription and "not a clinical plan" in ds.DoseComment
    assert (ds.NumberOfFrames, ds.Rows, ds.Columns) == (40, 80, 80)
    # First frame at the most inferior CT slice (crop voxel (24, 24, 39): z = -3 * 79 mm).
    assert np.allclose(np.asarray(ds.ImagePositionPatient, float), (24 * 5.422, 24 * 5.422, -237.0), atol=1e-3)
    assert np.allclose(np.asarray(ds.GridFrameOffsetVector, float), np.arange(40) * 3.0)
    assert np.allclose(np.asarray(ds.PixelSpacing, float), (5.422, 5.422), atol=1e-4)
    assert list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0] and ds.FrameIncrementPointer == 0x3004000C
    assert "ReferencedRTPlanSequence" not in ds


def test_negative_noise_is_stored_as_zero_and_nan_refused(case, ct, tmp_path):
    series, _ = ct
    noisy = case.dose.array.astype(np.float64)
    noisy[0, 0, :3] = -0.01
    back = read_dose(write_rtdose(case.dose.with_array(noisy), tmp_path / "RD.dcm", series), series)
    assert np.array_equal(back.array[-1, 0, :3], np.zeros(3))
    noisy[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_rtdose(case.dose.with_array(noisy), tmp_path / "nan.dcm", series)


def test_plan_reference(case, ct, tmp_path):
    series, uids = ct
    with pytest.raises(InputError, match="rtplan.dcm: plan of patient 'id00001'"):
        write_rtdose(case.dose, tmp_path / "RD.dcm", series, plan=get_testdata_file("rtplan.dcm", download=False))
    plan = pydicom.dcmread(get_testdata_file("rtplan.dcm", download=False))
    plan.PatientID, plan.FrameOfReferenceUID = PATIENT_ID, uids["frame"]
    save(plan, tmp_path / "RP.dcm")
    ds = pydicom.dcmread(write_rtdose(case.dose, tmp_path / "RD.dcm", series, plan=tmp_path / "RP.dcm"))
    (reference,) = ds.ReferencedRTPlanSequence
    assert reference.ReferencedSOPInstanceUID == plan.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5"


def _pydicom_dose_in_gy(tmp_path, offsets=None):
    """pydicom's rtdose.dcm (10 x 10 x 15, 10 mm pixels, 5 mm frames, RELATIVE units) marked as Gy."""
    ds = pydicom.dcmread(get_testdata_file("rtdose.dcm", download=False))
    ds.DoseUnits = "GY"
    if offsets is not None:
        ds.GridFrameOffsetVector = list(offsets)
    save(ds, tmp_path / "RD.dcm")
    return tmp_path / "RD.dcm", ds


def test_pydicom_test_file_relative_and_absolute_offsets(tmp_path):
    path, ds = _pydicom_dose_in_gy(tmp_path)
    expected = ds.pixel_array.astype(np.float64) * 1e-6
    dose = read_dose(path)
    assert np.array_equal(dose.array, expected)
    assert dose.geometry.shape == (15, 10, 10) and dose.geometry.spacing == (10.0, 10.0, 5.0)
    assert np.allclose(dose.geometry.origin, (189.43125, 199.43125, -761.87))
    # The same frames given as absolute z positions (allowed for axial grids).
    absolute, _ = _pydicom_dose_in_gy(tmp_path / "abs", offsets=-761.87 + 5.0 * np.arange(15))
    assert np.array_equal(read_dose(absolute).array, expected)
    # Frames running towards the feet: read back in +z order, starting 70 mm lower.
    down, _ = _pydicom_dose_in_gy(tmp_path / "down", offsets=-5.0 * np.arange(15))
    flipped = read_dose(down)
    assert np.array_equal(flipped.array, expected[::-1])
    assert np.allclose(flipped.geometry.origin, (189.43125, 199.43125, -831.87))


def test_pydicom_test_file_resampled_onto_another_grid(tmp_path):
    path, ds = _pydicom_dose_in_gy(tmp_path)
    # Voxel centres halfway between dose frames: the mean of the two frames (linear interpolation).
    target = Geometry((2, 10, 10), (10.0, 10.0, 5.0), (189.43125, 199.43125, -761.87 + 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    dose = read_dose(path, target)
    frames = ds.pixel_array.astype(np.float64) * 1e-6
    assert np.allclose(dose.array, (frames[:2] + frames[1:3]) / 2)


def test_bad_doses_are_refused(case, ct, tmp_path):
    series, _ = ct
    relative = get_testdata_file("rtdose.dcm", download=False)
    with pytest.raises(InputError, match="rtdose.dcm: DoseUnits is RELATIVE, expected GY"):
        read_dose(relative)
    path, _ = _pydicom_dose_in_gy(tmp_path)
    with pytest.raises(InputError, match="RD.dcm: dose is in frame of reference .* the series in"):
        read_dose(path, series)
    with pytest.raises(InputError, match="RD.dcm: dose grid .* does not overlap the CT grid"):
        read_dose(path, series.geometry)
    far = Geometry(case.dose.geometry.shape, case.dose.geometry.spacing, (5000.0, 0.0, 0.0), case.dose.geometry.direction)
    with pytest.raises(InputError, match="does not overlap the CT"):
        write_rtdose(Volume(case.dose.array, far), tmp_path / "far.dcm", series)
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"\x00" * 300)
    with pytest.raises(InputError, match=f"{fake}: not a DICOM file"):
        read_dose(fake, series)
    with pytest.raises(InputError, match="CT.000.dcm: a DICOM CT file, expected an RTDOSE"):
        read_dose(series.folder / "CT.000.dcm")

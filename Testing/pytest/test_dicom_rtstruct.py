"""RT Structure Sets: written from masks, read back onto the CT, pydicom's own test file, bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from dicom_testdata import crop_case, write_ct_series
from sparsert.errors import InputError
from sparsert.io.dicom.files import RESEARCH_USE
from sparsert.io.dicom.series import read_dicom_series
from sparsert.io.segmentation import Segmentation
from sparsert.io.segmentation_io import read_segmentation, read_structures, write_structures
from sparsert.io.volume import Geometry


@pytest.fixture(scope="module")
def case(openkbp_nifti):
    return crop_case(openkbp_nifti / "validation" / "pt_201")


@pytest.fixture(scope="module")
def written(case, tmp_path_factory):
    """The crop as a CT series and its structures as an RTSTRUCT beside it."""
    root = tmp_path_factory.mktemp("rtstruct")
    uids = write_ct_series(case.ct, root / "ct")
    rtstruct = write_structures(case.structures, root / "RS.dcm", reference_ct_folder=root / "ct")
    return root, uids, rtstruct


def test_round_trip_keeps_every_voxel_name_and_colour(case, written):
    root, _, rtstruct = written
    seg = read_structures(rtstruct, root / "ct")
    assert seg.names == case.structures.names
    for original in case.structures.segments:
        # The series runs along +z, the NIfTI crop head to feet: slices come back reversed.
        assert np.array_equal(seg[original.name].mask, original.mask[::-1]), original.name
        assert seg[original.name].color == pytest.approx(original.color, abs=1e-9)
    assert seg.geometry.matches(read_dicom_series(root / "ct").geometry)


def test_rtstruct_references_the_ct(written):
    root, uids, rtstruct = written
    ds = pydicom.dcmread(rtstruct)
    assert (ds.Modality, ds.SOPClassUID) == ("RTSTRUCT", "1.2.840.10008.5.1.4.1.1.481.3")
    assert ds.StudyInstanceUID == uids["study"] and ds.SeriesInstanceUID != uids["series"]
    assert ds.StructureSetDescription == RESEARCH_USE and "not a clinical plan" in ds.SeriesDescription
    (frame,) = ds.ReferencedFrameOfReferenceSequence
    assert frame.FrameOfReferenceUID == uids["frame"]
    (referenced,) = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == uids["series"] and len(referenced.ContourImageSequence) == 40
    slice_z = {}
    for path in (root / "ct").iterdir():
        ct = pydicom.dcmread(path, stop_before_pixels=True)
        slice_z[ct.SOPInstanceUID] = float(ct.ImagePositionPatient[2])
    for roi in ds.ROIContourSequence:
        for contour in roi.ContourSequence:
            z = np.asarray(contour.ContourData, dtype=float)[2::3]
            assert contour.ContourGeometricType == "CLOSED_PLANAR"
            assert np.allclose(z, slice_z[contour.ContourImageSequence[0].ReferencedSOPInstanceUID])
    colours = {r.ROIName: list(c.ROIDisplayColor) for r, c in zip(ds.StructureSetROISequence, ds.ROIContourSequence)}
    assert colours["Brainstem"] == [40, 200, 0] and colours["PTV70"] == [160, 110, 60]


def test_holes_are_written_as_separate_contours(case, written, tmp_path):
    root, _, _ = written
    ring = np.zeros(case.ct.geometry.shape, dtype=bool)
    ring[10, 20:40, 20:40] = True
    ring[10, 25:35, 25:35] = False
    empty = np.zeros_like(ring)
    seg = Segmentation(case.ct.geometry)
    seg.add("Ring", ring)
    seg.add("Empty", empty)
    path = write_structures(seg, tmp_path / "ring.dcm", reference_ct_folder=root / "ct")
    (ring_item, empty_item) = pydicom.dcmread(path).ROIContourSequence
    assert len(ring_item.ContourSequence) == 2 and "ContourSequence" in empty_item and not empty_item.ContourSequence
    back = read_structures(path, root / "ct")
    assert np.array_equal(back["Ring"].mask, ring[::-1]) and not back["Empty"].mask.any()


def test_pydicom_test_file_onto_a_given_grid():
    # rtstruct.dcm: 'patient' is the rectangle x in [-200, 200], y in [-150, 150] mm on z = -200,
    # -190, -180; two isocentres are POINT contours. On 7 mm pixels from (-247, -173) the centres
    # inside are i = 7..63 (57) and j = 4..46 (43).
    geometry = Geometry((3, 50, 72), (7.0, 7.0, 10.0), (-247.0, -173.0, -200.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    seg = read_structures(get_testdata_file("rtstruct.dcm", download=False), geometry)
    assert seg.names == ["patient"]  # the isocentres enclose no volume
    expected = np.zeros(geometry.shape, dtype=bool)
    expected[:, 4:47, 7:64] = True
    assert np.array_equal(seg["patient"].mask, expected) and expected.sum() == 3 * 57 * 43
    assert seg["patient"].color == pytest.approx((220 / 255, 160 / 255, 120 / 255))


def test_structures_of_another_scan_are_refused(case, written, tmp_path):
    root, uids, rtstruct = written
    with pytest.raises(InputError, match="rtstruct.dcm: contours are in frame of reference .* belongs to another scan"):
        read_structures(get_testdata_file("rtstruct.dcm", download=False), root / "ct")
    # Same study and frame of reference, another series: contours lie on that series' slices.
    write_ct_series(case.ct, tmp_path / "other", study_uid=uids["study"], frame_uid=uids["frame"])
    with pytest.raises(InputError, match=f"RS.dcm: drawn on series {uids['series']}, not on the series read from"):
        read_structures(rtstruct, tmp_path / "other")


def test_contours_off_the_grid_are_refused(written):
    root, _, rtstruct = written
    g = read_dicom_series(root / "ct").geometry
    half_slice = Geometry(g.shape, g.spacing, (g.origin[0], g.origin[1], g.origin[2] + 1.5), g.direction)
    with pytest.raises(InputError, match="between two CT slices"):
        read_structures(rtstruct, half_slice)
    fewer = Geometry((20, *g.shape[1:]), g.spacing, g.origin, g.direction)
    with pytest.raises(InputError, match="outside the CT's 20 slices"):
        read_structures(rtstruct, fewer)


def test_bad_files_are_named(case, written, tmp_path):
    root, _, rtstruct = written
    fake = tmp_path / "RS.fake.dcm"
    fake.write_text("this is not DICOM")
    with pytest.raises(InputError, match=f"{fake}: not a DICOM file"):
        read_structures(fake, root / "ct")
    with pytest.raises(InputError, match="a DICOM RTDOSE file, expected an RTSTRUCT"):
        read_structures(get_testdata_file("rtdose.dcm", download=False), root / "ct")
    with pytest.raises(InputError, match=f"{rtstruct}: an RTSTRUCT holds contours, not voxels; give the CT"):
        read_structures(rtstruct)
    with pytest.raises(InputError, match=f"{rtstruct}: a DICOM file; an RTSTRUCT is read onto the CT"):
        read_segmentation(rtstruct)
    with pytest.raises(InputError, match="writing DICOM RT needs the CT series"):
        write_structures(case.structures, tmp_path / "out.dcm")
    shutil.copy(rtstruct, tmp_path / "exists.dcm")
    with pytest.raises(InputError, match="exists.dcm: already exists"):
        write_structures(case.structures, tmp_path / "exists.dcm", reference_ct_folder=root / "ct")

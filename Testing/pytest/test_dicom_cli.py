"""``sparsert dicom``: DICOM RT -> case folder -> DICOM RT, as a headless user runs it."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from dicom_testdata import HU_OFFSET, crop_case, write_ct_series
from sparsert.cli.main import main
from sparsert.data.case_folder import read_case_folder
from sparsert.io.dicom.rtdose import write_rtdose
from sparsert.io.dicom.rtstruct import write_rtstruct
from sparsert.io.dicom.series import read_dicom_series
from sparsert.io.dose_io import read_dose
from sparsert.io.segmentation_io import read_structures, write_segmentation
from sparsert.io.volume import write_image
from sparsert.scribbles.simulate import simulate_scribbles


@pytest.fixture(scope="module")
def dicom_case(openkbp_nifti, tmp_path_factory):
    case = crop_case(openkbp_nifti / "validation" / "pt_201")
    root = tmp_path_factory.mktemp("dicom_cli")
    write_ct_series(case.ct, root / "ct")
    series = read_dicom_series(root / "ct")
    write_rtstruct(case.structures, root / "RS.dcm", series)
    write_rtdose(case.dose, root / "RD.dcm", series)
    return case, root


def test_round_trip_through_a_case_folder(dicom_case, tmp_path, capsys):
    case, root = dicom_case
    out = tmp_path / "pt_201"
    ct = ["--ct", str(root / "ct")]
    rt = ["--rtstruct", str(root / "RS.dcm"), "--rtdose", str(root / "RD.dcm")]
    assert main(["dicom", "to-nrrd", *ct, *rt, "--out", str(out)]) == 0
    assert "structures: Brainstem, Larynx" in capsys.readouterr().out
    folder = read_case_folder(out)
    assert np.array_equal(folder.images["ct"].array, case.ct.array[::-1].astype(np.int64) - HU_OFFSET)
    assert np.allclose(folder.dose.array, case.dose.array[::-1], atol=1e-6)
    for segment in case.structures.segments:
        assert np.array_equal(folder.structures[segment.name].mask, segment.mask[::-1])

    rtdose, rtstruct = tmp_path / "RD2.dcm", tmp_path / "RS2.dcm"
    assert main(["dicom", "rtdose", "--dose", str(out / "dose.nrrd"), *ct, "--bits", "16", "--out", str(rtdose)]) == 0
    assert main(["dicom", "rtstruct", "--structures", str(out / "structures.seg.nrrd"), *ct, "--out", str(rtstruct)]) == 0
    scaling = float(pydicom.dcmread(rtdose, stop_before_pixels=True).DoseGridScaling)
    assert np.abs(read_dose(rtdose, root / "ct").array - folder.dose.array).max() <= scaling / 2 * (1 + 1e-6)
    back = read_structures(rtstruct, root / "ct")
    assert all(np.array_equal(back[s.name].mask, s.mask) for s in folder.structures.segments)


def test_errors_are_one_line_naming_the_file(dicom_case, tmp_path, capsys):
    case, root = dicom_case
    write_ct_series(case.ct, tmp_path / "gappy", skip=(20,))
    assert main(["dicom", "to-nrrd", "--ct", str(tmp_path / "gappy"), "--out", str(tmp_path / "case")]) == 1
    assert f"sparsert dicom: error: {tmp_path / 'gappy'}: slices are not evenly spaced" in capsys.readouterr().err
    ct = ["--ct", str(root / "ct")]
    assert main(["dicom", "rtdose", "--dose", str(root / "RD.dcm"), *ct, "--out", str(tmp_path / "d.nrrd")]) == 1
    assert "d.nrrd: DICOM RT output names end in .dcm" in capsys.readouterr().err


def test_complete_reads_and_writes_dicom(dicom_case, tmp_path, capsys):
    """A DICOM CT folder and an RTSTRUCT of scribbles in, an RTSTRUCT of completed structures out."""
    _, root = dicom_case
    series = read_dicom_series(root / "ct")
    structures = read_structures(root / "RS.dcm", root / "ct")
    scribbles = simulate_scribbles(structures, seed=0)
    write_rtstruct(scribbles, tmp_path / "scribbles.dcm", series)
    out = tmp_path / "completed.dcm"
    args = ["complete", "--image", str(root / "ct"), "--scribbles", str(tmp_path / "scribbles.dcm"),
            "--out", str(out), "--method", "growcut"]
    assert main(args) == 0
    completed = read_structures(out, root / "ct")
    assert completed.names == [s.name for s in structures.segments]
    assert pydicom.dcmread(out, stop_before_pixels=True).StudyInstanceUID == series.study_uid
    # Scribbled voxels survive the completion and the contour round trip.
    assert all(completed[s.name].mask[scribbles[s.name].mask].mean() > 0.9 for s in structures.segments)
    capsys.readouterr()
    # An RTSTRUCT needs the CT series it refers to: a .dcm output without a DICOM CT is refused.
    nrrd_ct = tmp_path / "ct.nrrd"
    write_image(series.volume, nrrd_ct)
    args[2] = str(nrrd_ct)
    args[6] = str(tmp_path / "other.dcm")
    args[4] = str(tmp_path / "scribbles.seg.nrrd")
    write_segmentation(scribbles, args[4])
    assert main(args) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

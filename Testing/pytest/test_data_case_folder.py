"""Case folders (reading, writing, validation) and data set detection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sparsert.data.case import Case
from sparsert.data.case_folder import read_case_folder, write_case_folder
from sparsert.data.datasets import open_dataset
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.segmentation_io import write_segmentation
from sparsert.io.volume import Geometry, Volume, write_image

# A crop around the targets of pt_201 keeps the files small.
CROP = (slice(40, 70), slice(30, 80), slice(40, 90))  # k, j, i


def _crop_geometry(g: Geometry, crop=CROP) -> Geometry:
    start = [crop[2].start, crop[1].start, crop[0].start, 1.0]
    shape = tuple(s.stop - s.start for s in crop)
    return Geometry(shape, g.spacing, tuple((g.ijk_to_lps() @ start)[:3]), g.direction)


def _small_case(openkbp_nifti) -> Case:
    full = read_case_folder(openkbp_nifti / "validation" / "pt_201")
    g = _crop_geometry(full.geometry)
    structures = Segmentation(g, [Segment(s.name, s.mask[CROP], s.color) for s in full.structures.segments])
    return Case(
        "pt_201",
        {"ct": Volume(full.images["ct"].array[CROP], g)},
        structures=structures,
        dose=Volume(full.dose.array[CROP], g),
        possible_dose_mask=Volume(full.possible_dose_mask.array[CROP], g),
    )


def test_reads_the_openkbp_nifti_layout(openkbp_nifti):
    case = read_case_folder(openkbp_nifti / "validation" / "pt_201")
    assert case.case_id == "pt_201" and case.reference_name == "ct"
    assert case.images["ct"].array.dtype == np.int16 and case.dose.array.dtype == np.float32
    assert case.possible_dose_mask.array.dtype == bool
    assert len(case.structures.segments) == 10 and "PTV70" in case.structures
    # Dose is zero outside the possible-dose mask (challenge fact).
    assert not np.any(case.dose.array[~case.possible_dose_mask.array])


def test_write_then_read_is_identical(tmp_path, openkbp_nifti):
    case = _small_case(openkbp_nifti)
    folder = write_case_folder(case, tmp_path / "pt_201")
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["ct.nrrd", "dose.nrrd", "possible_dose_mask.nrrd", "structures.seg.nrrd"]
    write_segmentation(case.structures, folder / "scribbles.seg.nrrd")  # other segmentations are not images
    back = read_case_folder(folder)
    assert list(back.images) == ["ct"]
    assert np.array_equal(back.images["ct"].array, case.images["ct"].array)
    assert back.images["ct"].array.dtype == np.int16
    assert np.array_equal(back.dose.array, case.dose.array)
    assert np.array_equal(back.possible_dose_mask.array, case.possible_dose_mask.array)
    assert back.geometry.matches(case.geometry, atol=1e-9)
    assert back.structures.names == case.structures.names
    for a, b in zip(back.structures.segments, case.structures.segments):
        assert np.array_equal(a.mask, b.mask)
    with pytest.raises(InputError, match=r"ct\.nrrd: already exists"):
        write_case_folder(case, folder)


def test_grid_mismatch_names_the_file(tmp_path, openkbp_nifti):
    case = _small_case(openkbp_nifti)
    folder = write_case_folder(case, tmp_path / "c")
    g = case.geometry
    moved = Geometry(g.shape, g.spacing, (g.origin[0] + 1.3, g.origin[1], g.origin[2]), g.direction)
    write_image(Volume(case.dose.array, moved), folder / "dose.nrrd", overwrite=True)
    with pytest.raises(InputError, match=r"dose\.nrrd: dose is on a different grid .* than .*ct\.nrrd"):
        read_case_folder(folder)


def test_structures_saved_on_a_cropped_grid_are_padded(tmp_path, openkbp_nifti):
    case = _small_case(openkbp_nifti)
    folder = write_case_folder(Case("c", case.images), tmp_path / "c")
    inner = (slice(5, 25), slice(10, 40), slice(10, 40))
    sub = _crop_geometry(case.geometry, inner)
    ptv = case.structures["PTV70"].mask
    assert 0 < ptv[inner].sum() < ptv.sum()  # the sub-grid cuts through the PTV
    cropped_mask = np.zeros_like(ptv)
    cropped_mask[inner] = ptv[inner]
    write_segmentation(Segmentation(sub, [Segment("PTV70", ptv[inner])]), folder / "structures.seg.nrrd")
    assert np.array_equal(read_case_folder(folder).structures["PTV70"].mask, cropped_mask)


def test_nan_empty_structure_and_stray_files(tmp_path, openkbp_nifti):
    case = _small_case(openkbp_nifti)
    g = case.geometry
    folder = tmp_path / "c"
    write_image(case.images["ct"], folder / "ct.nii.gz")
    structures = folder / "structures"
    write_image(Volume(case.structures["PTV70"].mask, g), structures / "PTV70.nii.gz")
    write_image(Volume(np.zeros(g.shape, np.uint8), g), structures / "Larynx.nii.gz")
    read = read_case_folder(folder)
    assert read.structures.names == ["Larynx", "PTV70"]
    assert len(read.warnings) == 1 and "'Larynx' is empty" in read.warnings[0]
    (structures / "readme.md").write_text("notes")
    with pytest.raises(InputError, match=r"readme\.md: not an image"):
        read_case_folder(folder)
    (structures / "readme.md").unlink()
    write_segmentation(read.structures, folder / "structures.seg.nrrd")
    with pytest.raises(InputError, match="holds both structures/ and structures.seg.nrrd"):
        read_case_folder(folder)
    shutil.rmtree(structures)
    dose = case.dose.array.copy()
    dose[3, 4, 5] = np.nan
    write_image(Volume(dose, g), folder / "dose.nrrd")
    with pytest.raises(InputError, match=r"dose\.nrrd: image contains NaN"):
        read_case_folder(folder)
    (folder / "dose.nrrd").unlink()
    (folder / "ct.nii.gz").write_bytes(b"\x1f\x8bnot really gzip" * 10)
    with pytest.raises(InputError, match=r"ct\.nii\.gz: not a readable image"):
        read_case_folder(folder)


def test_dataset_layouts(tmp_path, openkbp_nifti, openkbp_csv):
    nested = open_dataset(openkbp_nifti)
    assert nested.format == "cases"
    ids = nested.case_ids()
    assert ids[:2] == ["train/pt_1", "train/pt_2"] and "validation/pt_201" in ids
    assert nested.load("validation/pt_201").case_id == "validation/pt_201"
    single = open_dataset(openkbp_nifti / "validation" / "pt_203")
    assert single.case_ids() == ["pt_203"] and len(single) == 1
    assert open_dataset(f"openkbp:{openkbp_csv}").case_ids() == ["pt_201", "pt_202", "pt_203"]
    with pytest.raises(InputError, match="no case 'pt_9'"):
        single.load("pt_9")


def test_dataset_errors(tmp_path, openkbp_nifti):
    with pytest.raises(InputError, match="data folder not found"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"empty: no cases found \(formats: openkbp: .*sts: .*cases: "):
        open_dataset(tmp_path / "empty")
    with pytest.raises(InputError, match="unknown data format 'nifti'"):
        open_dataset(f"nifti:{tmp_path / 'empty'}")
    mixed = tmp_path / "mixed"
    write_case_folder(_small_case(openkbp_nifti), mixed / "a")
    (mixed / "pt_9").mkdir()
    (mixed / "pt_9" / "ct.csv").write_text(",data\n")
    with pytest.raises(InputError, match=r"several formats \(1 openkbp, 1 cases\)"):
        open_dataset(mixed)
    assert open_dataset(f"cases:{mixed}").case_ids() == ["a"]

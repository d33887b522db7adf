"""Converting data sets to NRRD case folders (exact round trip) and summarising them."""

from __future__ import annotations

import numpy as np
import pytest

from sparsert.data.convert import convert_dataset, inspect_dataset
from sparsert.data.datasets import open_dataset
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, write_image


def _assert_same_case(a, b) -> None:
    assert list(a.images) == list(b.images)
    for name in a.images:
        assert np.array_equal(a.images[name].array, b.images[name].array), name
        assert a.images[name].array.dtype == b.images[name].array.dtype, name
        assert a.images[name].geometry.matches(b.images[name].geometry, atol=1e-9), name
    for part in ("dose", "possible_dose_mask"):
        x, y = getattr(a, part), getattr(b, part)
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x.array, y.array) and x.array.dtype == y.array.dtype, part
    assert a.structures.names == b.structures.names
    for s, t in zip(a.structures.segments, b.structures.segments):
        assert np.array_equal(s.mask, t.mask) and np.allclose(s.color, t.color), s.name


def test_convert_openkbp_csv_round_trip(tmp_path, openkbp_csv):
    source = open_dataset(openkbp_csv)
    calls = []
    written = convert_dataset(source, tmp_path / "out", progress=lambda *args: calls.append(args))
    assert [p.name for p in written] == ["pt_201", "pt_202", "pt_203"]
    assert calls == [(1, 3, "pt_201"), (2, 3, "pt_202"), (3, 3, "pt_203")]
    assert (tmp_path / "out" / "pt_202" / "structures.seg.nrrd").is_file()
    converted = open_dataset(tmp_path / "out")
    assert converted.format == "cases" and converted.case_ids() == source.case_ids()
    for case_id in ("pt_201", "pt_203"):
        _assert_same_case(converted.load(case_id), source.load(case_id))


def test_convert_sts_keeps_each_modality_grid(tmp_path, sts_dir):
    source = open_dataset(sts_dir / "STS_005")
    convert_dataset(source, tmp_path)
    back = open_dataset(tmp_path / "STS_005").load("STS_005")
    names = sorted(p.name for p in (tmp_path / "STS_005").iterdir())
    assert names == ["ct.nrrd", "mr.nrrd", "pet.nrrd", "structures.seg.nrrd"]
    _assert_same_case(back, source.load("STS_005"))


def test_convert_refuses_to_overwrite(tmp_path, openkbp_nifti):
    source = open_dataset(openkbp_nifti / "validation" / "pt_202")
    convert_dataset(source, tmp_path)
    with pytest.raises(InputError, match=r"pt_202: already exist"):
        convert_dataset(source, tmp_path)
    assert convert_dataset(source, tmp_path, overwrite=True) == [tmp_path / "pt_202"]


def test_inspect_summary(tmp_path, openkbp_csv, openkbp_nifti):
    summary = inspect_dataset(open_dataset(openkbp_csv))
    assert summary["format"] == "openkbp" and len(summary["cases"]) == 3
    first = summary["cases"][0]
    assert first["case_id"] == "pt_201"
    assert first["images"]["ct"]["size"] == [128, 128, 128]
    assert first["images"]["ct"]["spacing"] == [5.422, 5.422, 3.0]
    # Hand-checked against the CSV files: one row per voxel in each mask.
    mask_rows = sum(1 for _ in open(openkbp_csv / "pt_201" / "possible_dose_mask.csv")) - 1
    ptv_rows = sum(1 for _ in open(openkbp_csv / "pt_201" / "PTV70.csv")) - 1
    assert first["possible_dose_mask_voxels"] == mask_rows
    assert first["structures"]["PTV70"]["voxels"] == ptv_rows
    assert first["structures"]["PTV70"]["volume_cc"] == pytest.approx(ptv_rows * 5.422 * 5.422 * 3.0 / 1000, abs=1e-3)
    assert first["dose"]["range"][0] == 0.0 and 60 < first["dose"]["range"][1] < 100

    # A broken case is reported, not fatal.
    root = tmp_path / "data"
    convert_dataset(open_dataset(openkbp_nifti / "validation" / "pt_201"), root)
    ct = root / "pt_201" / "ct.nrrd"
    case = open_dataset(root).load("pt_201")
    g = case.geometry
    short = Volume(case.dose.array[:-1], Geometry((127, 128, 128), g.spacing, g.origin, g.direction))
    write_image(short, root / "pt_201" / "dose.nrrd", overwrite=True)
    report = inspect_dataset(open_dataset(root))
    assert "dose.nrrd: dose is on a different grid" in report["cases"][0]["error"]
    assert str(ct) in report["cases"][0]["error"]

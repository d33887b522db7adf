"""Cohort runs: failed cases, done cases skipped, worker processes, torchrun shards, the cohort commands."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from crossmodal_testdata import one_thread, save_tiny_checkpoint  # noqa: F401 (one_thread: fixture)

from sparsert import cohort
from sparsert.cli.main import main
from sparsert.crossmodal import TUMOUR
from sparsert.data.datasets import open_dataset
from sparsert.data.sts import read_sts_case
from sparsert.errors import InputError
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import read_image


@dataclass(frozen=True)
class TextJob:
    """Writes ``<case>.txt``; the cases in ``broken`` fail."""

    out_dir: Path
    broken: tuple[str, ...] = ()
    overwrite: bool = False

    def outputs(self, case_id: str) -> list[Path]:
        return [self.out_dir / f"{case_id}.txt"]

    def load(self):
        return self._write

    def _write(self, case_id: str) -> list[Path]:
        if case_id in self.broken:
            raise InputError(f"{case_id}: broken\nfor a reason")
        [path] = self.outputs(case_id)
        path.write_text(case_id)
        return [path]


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_a_failed_case_is_reported_on_one_line_and_the_others_are_written(tmp_path, capsys):
    job = TextJob(tmp_path, broken=("b",))
    results = cohort.run(job, ["a", "b", "c"])
    assert [r.status for r in results] == ["done", "failed", "done"]
    assert (tmp_path / "c.txt").is_file() and not (tmp_path / "b.txt").exists()
    assert "sparsert: case b failed: b: broken for a reason\n" in capsys.readouterr().err
    assert cohort.write_summary(results, job, "summary.json", {"data": "x"}) == 1
    rows = _rows(tmp_path / "summary.csv")
    assert [(r["case_id"], r["status"], r["error"]) for r in rows] == [
        ("a", "done", ""), ("b", "failed", "b: broken for a reason"), ("c", "done", "")]
    assert rows[0]["files"] == str(tmp_path / "a.txt") and float(rows[0]["peak_rss_mb"]) > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["data"], summary["done"], summary["failed"], set(summary["seconds"])) == ("x", 2, 1, {"a", "c"})


def test_done_cases_are_skipped_unless_overwritten(tmp_path):
    job = TextJob(tmp_path)
    cohort.run(job, ["a", "b"])
    (tmp_path / "a.txt").write_text("kept")
    (tmp_path / "b.txt").unlink()
    assert [r.status for r in cohort.run(job, ["a", "b"])] == ["skipped", "done"]
    assert (tmp_path / "a.txt").read_text() == "kept"
    assert [r.status for r in cohort.run(replace(job, overwrite=True), ["a", "b"])] == ["done", "done"]
    assert (tmp_path / "a.txt").read_text() == "a"
    with pytest.raises(InputError, match="--workers must be at least 1"):
        cohort.run(job, ["a"], workers=0)


def test_each_torchrun_rank_runs_its_share_and_writes_its_own_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    job = TextJob(tmp_path)
    results = cohort.run(job, ["a", "b", "c", "d", "e"])
    assert [r.case_id for r in results] == ["b", "e"]
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["b.txt", "e.txt"]
    assert cohort.write_summary(results, job, "summary.json", {}) == 0
    assert [r["case_id"] for r in _rows(tmp_path / "summary.rank1.csv")] == ["b", "e"]
    assert json.loads((tmp_path / "summary.rank1.json").read_text())["rank"] == 1


def test_dose_cohort_in_two_workers_writes_what_one_process_does(tiny_dose_run, tiny_openkbp, tmp_path):
    run, _ = tiny_dose_run
    args = ["dose", "--data", str(tiny_openkbp), "--max-cases", "2", "--model", str(run / "best.pt"), "--device", "cpu"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args + ["--out", str(one)]) == 0
    assert main(args + ["--out", str(two), "--workers", "2"]) == 0
    ids = open_dataset(str(tiny_openkbp)).case_ids()[:2]
    for case_id in ids:
        np.testing.assert_allclose(read_image(two / f"{case_id}.nrrd").array, read_image(one / f"{case_id}.nrrd").array,
                                   atol=1e-4)
    summary = json.loads((two / "predictions.json").read_text())
    assert (summary["done"], summary["failed"], sorted(summary["seconds"])) == (2, 0, ids)
    assert main(args + ["--out", str(one)]) == 0  # a second run skips the done cases
    assert json.loads((one / "predictions.json").read_text())["skipped"] == 2


def test_complete_cohort_completes_simulated_scribbles(tiny_openkbp, tmp_path):
    out = tmp_path / "completed"
    args = ["complete", "--data", str(tiny_openkbp), "--max-cases", "1", "--method", "growcut", "--out", str(out)]
    assert main(args) == 0
    dataset = open_dataset(str(tiny_openkbp))
    case = dataset.load(dataset.case_ids()[0])
    completed = read_segmentation(out / f"{case.case_id}.seg.nrrd")
    assert completed.geometry.matches(case.geometry) and set(completed.names) <= set(case.structures.names)
    assert all(s.mask.any() for s in completed.segments)
    assert [r["status"] for r in _rows(out / "summary.csv")] == ["done"]


@pytest.mark.usefixtures("one_thread")
def test_crossmodal_cohort_segments_each_case_and_reports_a_broken_one(sts_dir, tmp_path, capsys):
    data = tmp_path / "sts"
    cases = ["STS_019", "STS_025"]  # the smallest
    for name in cases:
        (data / name).parent.mkdir(exist_ok=True)
        (data / name).symlink_to(sts_dir / name)
    (data / "STS_999").mkdir()
    (data / "STS_999" / "CT_image.nii.gz").write_text("not an image")
    out = tmp_path / "out"
    args = ["crossmodal", "--data", f"sts:{data}", "--out", str(out), "--device", "cpu",
            "--model", str(save_tiny_checkpoint(tmp_path / "run", bias=30.0))]
    assert main(args) == 1
    assert "sparsert: case STS_999 failed:" in capsys.readouterr().err
    for name in cases:
        seg = read_segmentation(out / f"{name}.seg.nrrd")
        assert seg.names == [TUMOUR] and seg[TUMOUR].mask.any()
        assert seg.geometry.matches(read_sts_case(sts_dir / name).geometry)
    assert [r["status"] for r in _rows(out / "summary.csv")] == ["done", "done", "failed"]
    assert main(args) == 1  # the done cases are skipped, the broken one fails again
    assert [r["status"] for r in _rows(out / "summary.csv")] == ["skipped", "skipped", "failed"]

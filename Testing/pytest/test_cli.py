"""The sparsert command line, run as users run it (in-process through ``main``, and once as a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sparsert.cli.main import main
from sparsert.data.openkbp_csv import read_openkbp_case, write_openkbp_prediction
from sparsert.io.volume import Volume, write_image
from sparsert.io.segmentation_io import write_segmentation


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "data", "evaluate"):
        assert command in out


def test_python_m_sparsert_runs():
    done = subprocess.run([sys.executable, "-m", "sparsert", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("sparsert ")


@pytest.fixture(scope="module")
def pt_201(openkbp_csv):
    return read_openkbp_case(openkbp_csv / "pt_201")


@pytest.fixture
def one_patient(tmp_path, openkbp_csv):
    """An OpenKBP-format patients folder holding pt_201 only, and an empty predictions folder."""
    reference, preds = tmp_path / "ref", tmp_path / "pred"
    reference.mkdir()
    preds.mkdir()
    (reference / "pt_201").symlink_to(openkbp_csv / "pt_201")
    return reference, preds


def _write_predictions(folder, case, shift_gy):
    pred = np.where(case.possible_dose_mask.array > 0, case.dose.array + shift_gy, 0).astype(np.float32)
    write_openkbp_prediction(Volume(pred, case.dose.geometry), folder / "pt_201.csv")


def test_evaluate_dose_perfect_prediction_scores_zero(tmp_path, one_patient, pt_201, capsys):
    reference, preds = one_patient
    _write_predictions(preds, pt_201, 0.0)
    out = tmp_path / "metrics.json"
    args = ["evaluate", "dose", "--reference", f"openkbp:{reference}", "--predicted", str(preds), "--out", str(out)]
    assert main(args + ["--csv", str(tmp_path / "cases.csv")]) == 0
    assert (tmp_path / "cases.csv").read_text().splitlines() == ["case_id,dose_error,dvh_error", "pt_201,0.0,0.0"]
    result = json.loads(out.read_text())
    assert result["dose_score"] == 0.0 and result["dvh_score"] == 0.0
    assert result["n_cases"] == 1 and result["cases"][0]["case_id"] == "pt_201"
    assert "dose score 0.0000 Gy" in capsys.readouterr().out


def test_evaluate_dose_known_shift(tmp_path, one_patient, pt_201):
    """+1 Gy inside the possible-dose mask: the dose error is exactly 1 Gy per possible-dose voxel."""
    reference, preds = one_patient
    _write_predictions(preds, pt_201, 1.0)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "dose", "--reference", str(reference), "--predicted", str(preds), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dose_score"] == pytest.approx(1.0, abs=1e-5)
    # Targets lie inside the possible-dose mask, so their D99/D95/D1 shift by exactly 1 Gy.
    rows = result["cases"][0]["dvh_metrics"]
    target_errors = [r["abs_error"] for r in rows if r["roi"].startswith("PTV") and r["abs_error"] is not None]
    assert target_errors and np.allclose(target_errors, 1.0, atol=1e-4)
    assert result["plan_quality_mean_abs_error"]["D_95"] == pytest.approx(1.0, abs=1e-4)


def test_evaluate_dose_file_pair(tmp_path, pt_201):
    ref = write_image(pt_201.dose, tmp_path / "ref.nrrd")
    pred = write_image(pt_201.dose.with_array(pt_201.dose.array * 1.1), tmp_path / "pred.nrrd")
    seg = write_segmentation(pt_201.structures, tmp_path / "s.seg.nrrd")
    mask = write_image(pt_201.possible_dose_mask, tmp_path / "mask.nrrd")
    out = tmp_path / "m.json"
    args = ["evaluate", "dose", "--reference", str(ref), "--predicted", str(pred), "--structures", str(seg),
            "--possible-dose-mask", str(mask), "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    possible = pt_201.possible_dose_mask.array > 0
    expected = float(np.abs(pt_201.dose.array * 0.1).sum() / possible.sum())
    assert result["dose_score"] == pytest.approx(expected, rel=1e-5)
    # The output exists now: a second run must refuse to overwrite it.
    assert main(args) == 1


def test_bad_key_value_options_are_one_line_errors(tmp_path, capsys):
    assert main(["evaluate", "dose", "--reference", str(tmp_path), "--predicted", str(tmp_path), "--prescription", "PTV70"]) == 1
    assert "--prescription 'PTV70': expected NAME=GY" in capsys.readouterr().err


def test_evaluate_dose_errors_are_one_line(tmp_path, capsys):
    code = main(["evaluate", "dose", "--reference", str(tmp_path / "nope"), "--predicted", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "not found" in err


def test_evaluate_dose_reports_missing_predictions(one_patient, capsys):
    reference, preds = one_patient
    assert main(["evaluate", "dose", "--reference", str(reference), "--predicted", str(preds)]) == 1
    assert "no prediction for 1 of 1 cases (pt_201)" in capsys.readouterr().err


def test_data_inspect_and_convert(tmp_path, openkbp_csv, capsys):
    reference = tmp_path / "ref"
    reference.mkdir()
    (reference / "pt_202").symlink_to(openkbp_csv / "pt_202")
    assert main(["data", "inspect", "--data", str(reference), "--out", str(tmp_path / "summary.json")]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["format"] == "openkbp" and summary["cases"][0]["case_id"] == "pt_202"
    assert main(["data", "convert", "--data", str(reference), "--out", str(tmp_path / "conv")]) == 0
    assert (tmp_path / "conv" / "pt_202" / "structures.seg.nrrd").is_file()
    # Converting again into the same folder must not overwrite what is there.
    assert main(["data", "convert", "--data", str(reference), "--out", str(tmp_path / "conv")]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_complete_with_grow_from_seeds_keeps_names_and_refuses_overwrite(tmp_path, capsys):
    from sparsert.io.segmentation_io import read_segmentation
    from sparsert.resources import sample_data_dir

    sample = sample_data_dir() / "OpenKBP-pt_201"
    out = tmp_path / "completed.seg.nrrd"
    args = ["complete", "--image", str(sample / "ct.nrrd"), "--scribbles", str(sample / "scribbles.seg.nrrd"),
            "--out", str(out), "--method", "growcut"]
    assert main(args) == 0
    completed = read_segmentation(out)
    scribbles = read_segmentation(sample / "scribbles.seg.nrrd")
    assert completed.names == [n for n in scribbles.names if n.lower() != "background"]
    for seg in completed.segments:
        assert seg.color == pytest.approx(scribbles[seg.name].color, abs=1e-3)
        assert seg.mask[scribbles[seg.name].mask].all()
    assert main(args) == 1 and "already exists" in capsys.readouterr().err


def test_demo_stops_honestly_at_the_first_missing_model(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--completion", "growcut", "--dose-model", "no-such-model"]) == 1
    err = capsys.readouterr().err
    assert "stopped: no model named 'no-such-model' for dose" in err
    assert (tmp_path / "demo" / "completed_structures.seg.nrrd").is_file()
    metrics = json.loads((tmp_path / "demo" / "completion_metrics.json").read_text())
    assert 0.0 < metrics["mean_dice"] < 1.0 and "PTV70" in metrics["structures"]

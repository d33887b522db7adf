"""``sparsert refine`` and ``sparsert evaluate refine`` with tiny random models saved as training runs save them,
and the evaluation summary on hand-made click trajectories."""

from __future__ import annotations

import json

import numpy as np
import pytest

from interactive_testdata import save_model, sts_ct_pet, tiny_model
from sparsert.cli.evaluate_cmd import model_groups
from sparsert.cli.main import main
from sparsert.errors import MissingComponentError
from sparsert.evaluation.refine import Trajectory, evaluate_cross_validation, evaluate_refinement, summarize
from sparsert.interactive.session import RefinementSession
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import write_image
from sparsert.models.icr import load_click_model
from sparsert.training.icr_data import ICRCase


@pytest.fixture(scope="module")
def images(sts_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    ct, pet = sts_ct_pet(sts_dir)
    return ct, write_image(ct, folder / "ct.nrrd"), write_image(pet, folder / "pet.nrrd")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return [save_model(tiny_model(seed=s, spacing=(2.0, 2.0, 3.27)), folder / f"run{s}") for s in (1, 2)]


def _clicks(tmp_path, items) -> str:
    path = tmp_path / "clicks.json"
    path.write_text(json.dumps(items))
    return str(path)


def test_refine_writes_what_the_session_gives(tmp_path, images, model_files, capsys):
    ct, ct_path, pet_path = images
    ras = ct.geometry.ijk_to_ras() @ np.array([40.0, 8.0, 3.0, 1.0])
    items = [{"ijk": [24, 24, 6], "positive": True}, {"ras": list(ras[:3]), "positive": False}]
    out = tmp_path / "out.seg.nrrd"
    args = ["refine", "--image", str(ct_path), "--image", str(pet_path), "--clicks", _clicks(tmp_path, items),
            "--model", str(model_files[0]), "--out", str(out), "--device", "cpu"]
    assert main(args) == 0
    seg = read_segmentation(out)
    assert seg.geometry.matches(ct.geometry) and seg.names == ["GTV_Mass"]
    assert "after 2 click(s)" in capsys.readouterr().out

    session = RefinementSession.from_files(load_click_model(model_files[:1]), [ct_path, pet_path])
    session.initial()
    session.add_click((24, 24, 6), True)
    session.add_click((40, 8, 3), False)  # the RAS point above is this voxel
    assert np.array_equal(seg.segments[0].mask, session.segmentation().segments[0].mask)


def test_refine_without_clicks_and_with_an_ensemble(tmp_path, images, model_files):
    _, ct_path, pet_path = images
    out = tmp_path / "initial.seg.nrrd"
    args = ["refine", "--image", str(ct_path), "--image", str(pet_path), "--out", str(out), "--device", "cpu"]
    assert main(args + ["--model", str(model_files[0]), "--model", str(model_files[1])]) == 0
    session = RefinementSession.from_files(load_click_model(model_files), [ct_path, pet_path])
    session.initial()
    assert np.array_equal(read_segmentation(out).segments[0].mask, session.segmentation().segments[0].mask)
    assert main(args + ["--model", str(model_files[0])]) == 1  # refuses to overwrite
    # --flips: the ensemble's passes averaged with their passes on the mirrored images.
    flipped = tmp_path / "flipped.seg.nrrd"
    args[args.index(str(out))] = str(flipped)
    assert main(args + ["--model", str(model_files[0]), "--model", str(model_files[1]), "--flips"]) == 0
    session = RefinementSession.from_files(load_click_model(model_files, flips=True), [ct_path, pet_path])
    session.initial()
    assert np.array_equal(read_segmentation(flipped).segments[0].mask, session.segmentation().segments[0].mask)
    assert not np.array_equal(read_segmentation(flipped).segments[0].mask, read_segmentation(out).segments[0].mask)


def test_refine_errors(tmp_path, images, model_files, capsys):
    _, ct_path, pet_path = images
    base = ["refine", "--image", str(ct_path), "--image", str(pet_path), "--out", str(tmp_path / "o.seg.nrrd")]
    assert main(base + ["--model", "no-such-model"]) == 1
    assert "no model named 'no-such-model' for refinement" in capsys.readouterr().err
    model = ["--model", str(model_files[0])]
    bad = [
        ([{"ijk": [1, 2], "positive": True}], "click 1: 'ijk' must be a list of three numbers"),
        ([{"ijk": [1, 2, 3]}], "click 1: 'positive' must be true or false"),
        ([{"ijk": [1, 2, 3], "ras": [0, 0, 0], "positive": True}], "exactly one of 'ijk' or 'ras'"),
        ([{"ijk": [1, 2, 3], "positive": True}, {"ijk": [48, 0, 0], "positive": True}], "outside the image"),
        ({"ijk": [1, 2, 3]}, "expected a JSON list"),
    ]
    for items, message in bad:
        assert main(base + model + ["--clicks", _clicks(tmp_path, items)]) == 1
        assert message in capsys.readouterr().err
    assert main(["refine", "--image", str(ct_path), "--out", str(tmp_path / "o.seg.nrrd")] + model) == 1
    assert "needs 2 image(s) (ct, pet" in capsys.readouterr().err
    # PET and CT swapped: the PET in SUV read as a CT holds nothing but air, and nothing is written.
    swapped = ["refine", "--image", str(pet_path), "--image", str(ct_path), "--out", str(tmp_path / "s.seg.nrrd")]
    assert main(swapped + model) == 1
    assert f"{pet_path}, given as the CT, does not look like a CT" in capsys.readouterr().err
    assert not (tmp_path / "s.seg.nrrd").exists()


def test_evaluate_refine_writes_json_and_plot(tmp_path, sts_dir, model_files):
    out, plot = tmp_path / "result.json", tmp_path / "dice.png"
    args = ["evaluate", "refine", "--data", f"sts:{sts_dir}", "--model", str(model_files[0]), "--fold", "0",
            "--folds", "10", "--max-clicks", "2", "--crop", "16", "32", "32", "--cache", str(tmp_path / "cache"),
            "--out", str(out), "--plot", str(plot), "--device", "cpu"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["case_ids"] == ["STS_001", "STS_015"] and result["n_cases"] == 2  # patients 1 and 11 of 20
    assert len(result["dice_curve"]) == 3 and set(result["dice_at"]) == {"0", "1"}
    assert len(result["cases"][0]["dice"]) == 3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cross_validation_scores_each_fold_with_its_own_model(images):
    ct = images[0]
    scaled = (ct.array.astype(np.float32) + 1000.0) / 1000.0
    k, j, i = np.indices(ct.array.shape)
    cases = [ICRCase(f"case{n}", np.stack([scaled, np.roll(scaled, n, axis=2)]),
                     (k - 6) ** 2 / 9 + (j - 20 - 4 * n) ** 2 / 64 + (i - 24) ** 2 / 64 <= 1, ct.geometry)
             for n in range(3)]
    models = [tiny_model(seed=s) for s in (3, 4)]
    folds = [cases[:1], cases[1:]]
    result = evaluate_cross_validation(zip(models, folds), max_clicks=2)
    alone = [evaluate_refinement(m, f, max_clicks=2) for m, f in zip(models, folds)]
    assert [c["case_id"] for c in result["cases"]] == ["case0", "case1", "case2"] and result["n_cases"] == 3
    assert [f["n_cases"] for f in result["folds"]] == [1, 2]
    assert [f["dice_at"] for f in result["folds"]] == [a["dice_at"] for a in alone]
    assert result["dice_curve"] == pytest.approx(np.mean([c["dice"] for a in alone for c in a["cases"]], axis=0))


def test_cross_validation_needs_one_model_per_fold(tmp_path, sts_dir, model_files, capsys):
    args = ["evaluate", "refine", "--data", f"sts:{sts_dir}", "--model", str(model_files[0]), "--model", str(model_files[1]),
            "--cross-validation", "--out", str(tmp_path / "cv.json"), "--device", "cpu"]
    assert main(args) == 1
    assert "one --model per fold (5, in fold order) and no --fold; got 2 model(s)" in capsys.readouterr().err
    assert not (tmp_path / "cv.json").exists()


def test_cross_validation_folds_may_be_ensembles(model_files):
    a, b = (str(p) for p in model_files)
    assert model_groups([f"{a},{b}", a], cross_validation=True) == [list(model_files), model_files[:1]]
    assert len(model_groups([a], cross_validation=False)) == 1
    with pytest.raises(MissingComponentError, match="no model named 'nothing' for refinement"):
        model_groups([f"{a},nothing"], cross_validation=True)


def test_summary_of_hand_made_trajectories():
    inf = float("inf")
    a = Trajectory("a", [0.5, 0.8, 0.9], [inf, 6.0, 2.0], [100, 50], [0.1, 0.3], [])
    b = Trajectory("b", [0.7, 0.7, 0.7], [4.0, 4.0, 4.0], [0, 0], [0.2, 0.2], [])
    s = summarize([a, b], max_clicks=2)
    assert s["dice_at"]["0"]["mean"] == pytest.approx(0.6) and s["dice_at"]["1"]["mean"] == pytest.approx(0.75)
    assert s["dice_curve"] == pytest.approx([0.6, 0.75, 0.8])
    assert s["hd95_mm_at"]["0"] == {"mean_finite": 4.0, "n_infinite": 1}
    # Dice 0.75: a after 1 click, b never (counts as 2) -> mean 1.5, 50% failures; 0.85: a after 2.
    noc = {row["threshold"]: row for row in s["noc_dice"]["thresholds"]}
    assert noc[0.75]["mean_noc"] == 1.5 and noc[0.75]["failure_percent"] == 50.0
    assert noc[0.85]["mean_noc"] == 2.0
    # HD95 5 mm: a after 2 clicks, b at 0; 2.5 mm: a after 2, b never.
    hd = {row["threshold"]: row for row in s["noc_hd95_mm"]["thresholds"]}
    assert hd[5.0]["mean_noc"] == 1.0 and hd[5.0]["failures"] == 0
    assert hd[2.5]["mean_noc"] == 2.0 and hd[2.5]["failures"] == 1
    assert s["mean_voxels_changed_per_click"] == 37.5

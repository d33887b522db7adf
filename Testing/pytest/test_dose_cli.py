"""Dose prediction end to end: a tiny real training run, then `sparsert dose` for a case and a cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparsert.cli.main import main
from sparsert.data.datasets import open_dataset
from sparsert.dose.inputs import automatic_body
from sparsert.dose.predict import DoseModel, check_domain, load_dose_checkpoint
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.segmentation_io import write_segmentation
from sparsert.io.volume import read_image
from sparsert.scribbles.simulate import simulate_scribbles


def test_training_writes_a_resumable_run_with_a_loadable_model(tiny_dose_run):
    run, args = tiny_dose_run
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "l1" in r] == [1, 2]
    assert all(np.isfinite(r["l1"]) and r["ranking"] >= 0 for r in records if "l1" in r)
    assert any(np.isfinite(r.get("val_dose_score", np.nan)) for r in records)
    assert main(args + ["--steps", "3"]) == 1  # a run folder is only reused with --resume
    assert main(args + ["--steps", "3", "--resume"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    model = load_dose_checkpoint(run / "best.pt")
    assert model.working_spacing_kji == (5.0, 7.8125, 7.8125) and "median_body_area_cm2" in model.domain


def test_training_starts_from_trained_weights_on_another_grid(tiny_dose_run, tmp_path, capsys):
    run, args = tiny_dose_run
    out = args.index("--out") + 1
    fine = [*args[:out], str(tmp_path / "fine"), *args[out + 1:], "--set", "working_spacing_kji=[5.0,3.90625,3.90625]",
            "--set", "lr=0", "--set", "val_every=100"]
    assert main([*fine, "--steps", "1", "--set", f"init={run / 'best.pt'}"]) == 0
    start, warm = load_dose_checkpoint(run / "best.pt"), load_dose_checkpoint(tmp_path / "fine" / "best.pt")
    assert warm.working_spacing_kji == (5.0, 3.90625, 3.90625)
    # At learning rate zero the weights are the starting ones (batch-norm-free network: nothing else moves).
    for name, value in start.net.state_dict().items():
        assert torch.equal(value, warm.net.state_dict()[name]), name

    wider = [*args[:out], str(tmp_path / "wider"), *args[out + 1:], "--set", "model.widths=[4,8,8,32]"]
    assert main([*wider, "--steps", "1", "--set", f"init={run / 'best.pt'}"]) == 1
    assert "its weights do not fit the configured network (widths (4, 8, 8, 16) there, (4, 8, 8, 32) here)" in capsys.readouterr().err


def test_with_a_weight_average_the_average_is_validated_and_kept(tiny_dose_run, tmp_path):
    run, args = tiny_dose_run
    out = args.index("--out") + 1
    averaged = [*args[:out], str(tmp_path / "avg"), *args[out + 1:], "--set", "weight_average=0.5",
                "--set", f"init={run / 'best.pt'}", "--steps", "2"]
    assert main(averaged) == 0
    checkpoint = torch.load(tmp_path / "avg" / "checkpoint.pt", weights_only=True)
    best = torch.load(tmp_path / "avg" / "best.pt", weights_only=True)
    assert best["metadata"]["step"] == 2  # validated at the last step, whose average is kept
    name = next(k for k, v in best["model"].items() if v.is_floating_point() and v.numel() > 1)
    assert torch.equal(best["model"][name], checkpoint["average"][name])
    assert not torch.equal(best["model"][name], checkpoint["model"][name])  # not the last step's weights
    # The average starts from the starting weights: at learning rate zero it is them.
    still = [*args[:out], str(tmp_path / "still"), *args[out + 1:], "--set", "weight_average=0.5",
             "--set", f"init={run / 'best.pt'}", "--set", "lr=0", "--steps", "2"]
    assert main(still) == 0
    start = torch.load(run / "best.pt", weights_only=True)["model"]
    kept = torch.load(tmp_path / "still" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(start[k], kept[k]) for k in start)


def test_dose_for_one_case_from_structures_and_from_scribbles(tiny_dose_run, tiny_openkbp, tmp_path):
    run, _ = tiny_dose_run
    folder = tiny_openkbp / open_dataset(str(tiny_openkbp)).case_ids()[0]
    ct, body = read_image(folder / "ct.nrrd"), read_image(folder / "possible_dose_mask.nrrd")
    case = open_dataset(str(tiny_openkbp)).load(folder.name)
    structures = folder / "structures.seg.nrrd"
    out = tmp_path / "dose.nrrd"
    common = ["--ct", str(folder / "ct.nrrd"), "--body", str(folder / "possible_dose_mask.nrrd"),
              "--model", str(run / "best.pt"), "--device", "cpu"]
    assert main(["dose", *common, "--structures", str(structures), "--out", str(out)]) == 0
    dose = read_image(out)
    assert dose.geometry.matches(ct.geometry) and dose.array.dtype == np.float32
    assert dose.array.max() > 0 and not dose.array[body.array == 0].any()
    assert main(["dose", *common, "--structures", str(structures), "--out", str(out)]) == 1  # never overwritten silently

    scribbles = simulate_scribbles(case.structures, seed=0, body_mask=body.array > 0)
    scribble_file = write_segmentation(scribbles, tmp_path / "scribbles.seg.nrrd")
    completed = tmp_path / "completed.seg.nrrd"
    assert main(["dose", *common, "--scribbles", str(scribble_file), "--completion", "growcut",
                 "--completed-out", str(completed), "--out", str(tmp_path / "from_scribbles.nrrd"), "--flips"]) == 0
    assert read_image(tmp_path / "from_scribbles.nrrd").array.max() > 0 and completed.is_file()


def test_bad_input_gets_a_clear_message(tiny_dose_run, tiny_openkbp, tmp_path, capsys):
    run, _ = tiny_dose_run
    folder = tiny_openkbp / open_dataset(str(tiny_openkbp)).case_ids()[0]
    case = open_dataset(str(tiny_openkbp)).load(folder.name)
    organs = Segmentation(case.geometry, [s for s in case.structures.segments if not s.name.startswith("PTV")])
    path = write_segmentation(organs, tmp_path / "organs.seg.nrrd")
    args = ["dose", "--ct", str(folder / "ct.nrrd"), "--structures", str(path), "--model", str(run / "best.pt"),
            "--out", str(tmp_path / "d.nrrd"), "--device", "cpu"]
    assert main(args) == 1
    assert "no target among the structures" in capsys.readouterr().err
    assert main(args[:-2] + ["--data", str(tiny_openkbp)]) == 1
    assert "either --ct" in capsys.readouterr().err

    model = DoseModel(net=None, working_spacing_kji=(5.0, 7.8, 7.8), domain={"median_body_area_cm2": [150.0, 300.0]})
    ct = np.full((4, 220, 220), -1000.0, np.float32)
    ct[:, 60:110, 60:110] = 40.0
    check_domain(model, automatic_body(ct), (2.5, 2.0, 2.0))  # a 100 cm2 body section: within the margin
    ct[:, 10:210, 10:210] = 40.0
    with pytest.raises(InputError, match="outside the dose model's training domain"):
        check_domain(model, automatic_body(ct), (2.5, 2.0, 2.0))  # a 1600 cm2 pelvis-sized section


def test_cohort_predictions_are_challenge_files_the_evaluator_scores(tiny_dose_run, openkbp_csv, tmp_path):
    run, _ = tiny_dose_run
    out = tmp_path / "pred"
    assert main(["dose", "--data", f"openkbp:{openkbp_csv}", "--model", str(run / "best.pt"),
                 "--device", "cpu", "--out", str(out)]) == 0
    case_id = open_dataset(f"openkbp:{openkbp_csv}").case_ids()[0]
    assert (out / f"{case_id}.csv").is_file() and (out / f"{case_id}.nrrd").is_file()
    assert json.loads((out / "predictions.json").read_text())["seconds"][case_id] > 0
    scores = tmp_path / "scores.json"
    assert main(["evaluate", "dose", "--reference", f"openkbp:{openkbp_csv}", "--predicted", str(out),
                 "--out", str(scores)]) == 0
    assert np.isfinite(json.loads(scores.read_text())["dose_score"])


def test_demo_runs_scribbles_to_dose_dvh_and_metrics(tiny_dose_run, tmp_path):
    run, _ = tiny_dose_run
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--completion", "growcut", "--dose-model", str(run / "best.pt"), "--device", "cpu"]) == 0
    for name in ("completed_structures.seg.nrrd", "predicted_dose.nrrd", "dvh.csv", "dvh.png", "dose_metrics.csv"):
        assert (out / name).is_file(), name
    scores = json.loads((out / "dose_scores.json").read_text())
    assert np.isfinite(scores["dose_score"]) and np.isfinite(scores["dvh_score"])


def test_the_scribble_baseline_sees_scribbles_inside_the_structures(tiny_dose_run):
    from sparsert.dose.inputs import ORGAN_CHANNELS, TARGET_CHANNEL
    from sparsert.training.cache import load_cached
    from sparsert.training.dose import case_channels

    run, _ = tiny_dose_run
    case = load_cached(sorted((run.parent / "cache").glob("*/*.npz"))[0])
    dense, highest = case_channels(case, "mask")
    sparse, same = case_channels(case, "scribble", np.random.default_rng(0))
    assert same == highest and np.array_equal(sparse[:TARGET_CHANNEL], dense[:TARGET_CHANNEL])
    structure = slice(TARGET_CHANNEL, ORGAN_CHANNELS.stop)
    assert 0 < (sparse[structure] > 0).sum() < 0.5 * (dense[structure] > 0).sum()
    assert not ((sparse[structure] > 0) & (dense[structure] == 0)).any()  # scribbles lie inside their structures


def test_the_cascade_dose_stage_is_trained_on_completed_structures(tiny_dose_run, tmp_path):
    from sparsert.completion.scm import load_scm
    from sparsert.dose.inputs import ORGAN_CHANNELS, TARGET_CHANNEL
    from sparsert.metrics.segmentation import dice
    from sparsert.training.cache import load_cached
    from sparsert.training.dose import case_channels

    run, args = tiny_dose_run
    case = load_cached(sorted((run.parent / "cache").glob("*/*.npz"))[0])
    dense, highest = case_channels(case, "mask")
    scribbled, _ = case_channels(case, "scribble")
    completed, same = case_channels(case, "completed", completion=load_scm("scm"))
    structure = slice(TARGET_CHANNEL, ORGAN_CHANNELS.stop)
    drawn, filled, truth = scribbled[structure] > 0, completed[structure] > 0, dense[structure] > 0
    assert same == highest and np.array_equal(completed[:TARGET_CHANNEL], dense[:TARGET_CHANNEL])
    # The same scribbles (the evaluation's setting, seed 0), completed: every scribble kept, far more voxels.
    assert not (drawn & ~filled).any() and filled.sum() > 3 * drawn.sum()
    assert dice(filled, truth) > 0.5 and not np.array_equal(filled, truth)
    with pytest.raises(ValueError, match="needs the completion network"):
        case_channels(case, "completed")

    trained = tmp_path / "completed-run"
    train = [a if a != str(run) else str(trained) for a in args]
    assert main(train + ["--steps", "1", "--set", "prompt=completed"]) == 0
    assert load_dose_checkpoint(trained / "best.pt").prompt == "completed"


def test_the_scribble_baseline_is_given_scribbles_as_drawn(tiny_dose_run, tiny_openkbp, tmp_path, capsys):
    _, args = tiny_dose_run
    run = tmp_path / "scribble-run"
    train = [a if a != str(tiny_dose_run[0]) else str(run) for a in args]
    assert main(train + ["--steps", "1", "--set", "prompt=scribble"]) == 0
    model = str(run / "best.pt")
    assert load_dose_checkpoint(model).prompt == "scribble"

    # A missing completion model is never loaded: the baseline's input is the scribbles themselves.
    cohort = ["dose", "--data", str(tiny_openkbp), "--model", model, "--completion-model", str(tmp_path / "none.pt"),
              "--device", "cpu", "--max-cases", "1"]
    assert main(cohort + ["--prompt", "scribble", "--out", str(tmp_path / "pred")]) == 0
    case_id = open_dataset(str(tiny_openkbp)).case_ids()[0]
    assert read_image(tmp_path / "pred" / f"{case_id}.nrrd").array.max() > 0
    capsys.readouterr()
    assert main(cohort + ["--prompt", "mask", "--out", str(tmp_path / "pred_mask")]) == 1
    assert "trained on scribbles in place of structures" in capsys.readouterr().err

    folder = tiny_openkbp / case_id
    case = open_dataset(str(tiny_openkbp)).load(case_id)
    scribbles = write_segmentation(simulate_scribbles(case.structures, seed=0), tmp_path / "scribbles.seg.nrrd")
    one = ["dose", "--ct", str(folder / "ct.nrrd"), "--model", model, "--completion-model", str(tmp_path / "none.pt"),
           "--device", "cpu"]
    assert main(one + ["--scribbles", str(scribbles), "--out", str(tmp_path / "d.nrrd")]) == 0
    assert main(one + ["--structures", str(folder / "structures.seg.nrrd"), "--out", str(tmp_path / "e.nrrd")]) == 1
    assert "give it scribbles, not dense structures" in capsys.readouterr().err
    assert not (tmp_path / "e.nrrd").exists()

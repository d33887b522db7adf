"""Click-refinement training data (STS crops, folds, augmentation) and short training runs of every style."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from interactive_testdata import TINY_NETWORK
from sparsert.cli.main import main
from sparsert.data.datasets import open_dataset
from sparsert.data.sts import read_sts_masks
from sparsert.errors import InputError
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import Geometry, write_image
from sparsert.models.icr import load_icr_model
from sparsert.training.icr import ICRTrainConfig, Samples, Trainer, train_icr
from sparsert.training.folds import cv_folds, fold_split
from sparsert.training.icr_data import (
    ICRDataConfig, augmentation, cached_icr_cases, crop_geometry, load_icr_case,
)
from sparsert.training.run import RunFolder

# 16 x 32 x 32 voxels of 6 x 6 x 9 mm: a 192 x 192 x 144 mm crop, small enough for tests.
TINY_DATA = ICRDataConfig(spacing=(6.0, 6.0, 9.0), size_kji=(16, 32, 32))


@pytest.fixture(scope="module")
def sts_paths(sts_dir, tmp_path_factory):
    dataset = open_dataset(f"sts:{sts_dir}")
    return cached_icr_cases(dataset, TINY_DATA, ["STS_001", "STS_002"], tmp_path_factory.mktemp("cache"))


def test_folds_split_patients_deterministically():
    ids = [f"STS_{n:03d}" for n in range(1, 21)]
    folds = cv_folds(ids, 5)
    assert [len(f) for f in folds] == [4] * 5
    assert sorted(sum(folds, [])) == ids
    assert folds[0] == ["STS_001", "STS_006", "STS_011", "STS_016"]
    train, test = fold_split(ids, 0)
    assert test == folds[0] and len(train) == 16 and not set(train) & set(test)
    assert cv_folds(ids, 5) == folds
    with pytest.raises(InputError, match="fold 5 does not exist"):
        fold_split(ids, 5)
    with pytest.raises(InputError, match="need at least"):
        cv_folds(ids[:3], 5)


def test_crop_is_centred_on_the_reference_image():
    reference = Geometry((10, 20, 30), (1.0, 1.0, 2.0), (-5.0, 3.0, 100.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    crop = crop_geometry(reference, ICRDataConfig(spacing=(2.0, 2.0, 3.0), size_kji=(4, 8, 8)))
    # Reference centre: origin + (29/2 * 1, 19/2 * 1, 9/2 * 2) = (9.5, 12.5, 109); crop centre: origin + (7, 7, 4.5).
    assert crop.origin == pytest.approx((2.5, 5.5, 104.5))
    assert crop.shape == (4, 8, 8) and crop.spacing == (2.0, 2.0, 3.0)


def test_sts_case_on_the_crop(sts_dir, sts_paths):
    case = load_icr_case(sts_paths[0])
    assert case.image.shape == (2, 16, 32, 32) and case.image.dtype == np.float32
    ct, pet = case.image
    assert 0.0 <= ct.min() and ct.max() <= 1.0  # soft-tissue window
    assert pet.max() > 0.3  # the tumour's uptake, carried over from the PET grid through physical space
    assert pet[case.truth].mean() > pet[~case.truth].mean()
    # The tumour lies inside the crop: its volume is kept within resampling error.
    mask = read_sts_masks(sts_dir / "STS_001")["ct"]
    expected_ml = mask.array.sum() * mask.geometry.voxel_volume_mm3 / 1000
    assert case.truth.sum() * case.geometry.voxel_volume_mm3 / 1000 == pytest.approx(expected_ml, rel=0.1)


def test_augmentation_keeps_image_and_label_together(sts_paths):
    case = load_icr_case(sts_paths[0])
    transform = augmentation(seed=3)
    outs = [transform({"image": case.image, "label": case.truth[None].astype(np.float32)}) for _ in range(4)]
    for out in outs:
        image, label = np.asarray(out["image"]), np.asarray(out["label"])[0] > 0.5
        assert image.shape == case.image.shape and label.shape == case.truth.shape
        assert abs(int(label.sum()) - int(case.truth.sum())) < 0.5 * case.truth.sum()
        assert image[1][label].mean() > image[1][~label].mean()  # PET still bright on the moved tumour
    assert any(not np.array_equal(np.asarray(o["image"]), case.image) for o in outs)


def _config(**changes) -> ICRTrainConfig:
    base = dict(steps=3, network=TINY_NETWORK, data=TINY_DATA, log_every=1, val_every=3, val_cases=1, val_clicks=1,
                checkpoint_every=2)
    return ICRTrainConfig(**{**base, **changes})


def _steps(run: RunFolder) -> list[int]:
    lines = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in lines if "loss" in r]


def test_initial_then_two_stage_training_write_run_folders(sts_paths, tmp_path):
    initial = RunFolder(tmp_path / "initial")
    result = train_icr(sts_paths[:1], sts_paths[1:], initial, _config(stage="initial"), device="cpu")
    assert result["step"] == 3 and set(result["val"]) == {"dice_0"}
    assert _steps(initial) == [1, 2, 3]
    assert yaml.safe_load((initial.path / "config.yaml").read_text())["stage"] == "initial"
    assert initial.load_checkpoint()["step"] == 3
    assert load_icr_model(initial.best_path).spec.kind == "initial"

    refine = RunFolder(tmp_path / "refine")
    config = _config(stage="refine", style="two_stage", max_interactions=3, steps=4)
    result = train_icr(sts_paths[:1], sts_paths[1:], refine, config, initial=initial.best_path, device="cpu")
    assert result["step"] == 4 and set(result["val"]) == {"dice_0", "dice_1"}
    assert _steps(refine) == [1, 2, 3, 4]  # one optimiser step per interaction
    model = load_icr_model(refine.best_path)
    assert model.spec.kind == "two_stage" and model.spec.spacing == (6.0, 6.0, 9.0)
    # The stage-1 network is carried over unchanged.
    stage1 = load_icr_model(initial.best_path)
    for name, value in stage1.initial_net.state_dict().items():
        assert np.array_equal(value.numpy(), model.initial_net.state_dict()[name].numpy())


def test_a_training_can_start_from_a_trained_model(sts_paths, tmp_path):
    initial = RunFolder(tmp_path / "initial")
    train_icr(sts_paths[:1], [], initial, _config(stage="initial", steps=2), device="cpu")
    first = RunFolder(tmp_path / "refine")
    config = _config(stage="refine", max_interactions=2, steps=2)
    train_icr(sts_paths[:1], [], first, config, initial=initial.best_path, device="cpu")
    # A training started from the first refinement's file starts with both its networks (stage 1 included).
    trainer = Trainer(_config(stage="refine", init=str(first.best_path)), torch.device("cpu"), None)
    before, start = load_icr_model(first.best_path).state_dict(), trainer.model.state_dict()
    assert before.keys() == start.keys() and all(torch.equal(before[k], start[k]) for k in before)
    again = RunFolder(tmp_path / "again")
    assert train_icr(sts_paths[:1], [], again, _config(stage="refine", steps=2, init=str(first.best_path)),
                     device="cpu")["step"] == 2
    # A stage-1 file cannot start a refinement network.
    with pytest.raises(InputError, match="a 'initial' model on ct, pet; this training needs a 'two_stage' model"):
        train_icr(sts_paths[:1], [], RunFolder(tmp_path / "wrong"), _config(stage="refine", init=str(initial.best_path)),
                  device="cpu")


def test_channel_dropout_zeroes_the_second_channel_only(sts_paths):
    cases = [load_icr_case(sts_paths[0])]
    rng = np.random.default_rng(0)
    dropped = Samples(cases, _config(augment=False, channel_dropout=1.0), iter([0]), rng).draw()[1]
    assert not dropped[1].any() and np.array_equal(dropped[0], cases[0].image[0])
    kept = Samples(cases, _config(augment=False), iter([0]), rng).draw()[1]
    assert np.array_equal(kept, cases[0].image) and cases[0].image[1].any()  # the cached case is untouched
    with pytest.raises(InputError, match="channel_dropout"):
        _config(channel_dropout=1.5).check()


def test_weight_average_is_what_best_holds(sts_paths, tmp_path):
    run = RunFolder(tmp_path / "averaged")
    train_icr(sts_paths[:1], [], run, _config(stage="initial", weight_average=0.5), device="cpu")
    checkpoint = run.load_checkpoint()
    best = torch.load(run.best_path, weights_only=True)["model"]
    name = next(k for k in best if k.endswith("weight"))
    assert torch.equal(best[name], checkpoint["average"][name])
    assert not torch.equal(best[name], checkpoint["model"][name])  # the raw weights are not shipped


@pytest.mark.parametrize("style", ["deepgrow", "deepedit"])
def test_baseline_training(style, sts_paths, tmp_path):
    run = RunFolder(tmp_path / style)
    result = train_icr(sts_paths, [], run, _config(stage="refine", style=style, steps=2), device="cpu")
    assert result["step"] == 2 and _steps(run) == [1, 2]
    assert load_icr_model(run.best_path).spec.kind == style


def test_two_stage_needs_a_stage_one_model(sts_paths, tmp_path):
    with pytest.raises(InputError, match="--initial"):
        train_icr(sts_paths, [], RunFolder(tmp_path / "r"), _config(stage="refine"), device="cpu")
    with pytest.raises(InputError, match="multiples of 4"):
        train_icr(sts_paths, [], RunFolder(tmp_path / "r"), _config(data=ICRDataConfig(size_kji=(10, 32, 32))), device="cpu")


def _tiny_fold_4(sts_dir, tmp_path, **settings) -> tuple[list[str], object]:
    """``train initial`` of fold 4 for one step with a tiny network from a settings file; its run folder."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0},
        "data": {"spacing": [6.0, 6.0, 9.0], "size_kji": [16, 32, 32]}, **settings,
    }))
    out = tmp_path / "run"
    return ["train", "initial", "--data", f"sts:{sts_dir}", "--out", str(out), "--config", str(path), "--steps", "1",
            "--fold", "4", "--cache", str(tmp_path / "cache"), "--device", "cpu"], out


def test_train_cli_runs_a_fold_from_a_settings_file(sts_dir, tmp_path, capsys):
    args, out = _tiny_fold_4(sts_dir, tmp_path, val_cases=1, log_every=1)
    assert main(args) == 0
    assert "training initial on 16 case(s), validating on 4" in capsys.readouterr().err
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["fold"] == 4 and config["network"]["channels"] == [4, 8, 16] and config["stage"] == "initial"
    assert load_icr_model(out / "best.pt").spec.network.channels == (4, 8, 16)
    assert main(args) == 1  # the run folder holds a checkpoint: --resume is needed
    assert "pass --resume" in capsys.readouterr().err


def test_weights_can_be_selected_on_training_patients_set_aside(sts_dir, tmp_path, capsys):
    args, out = _tiny_fold_4(sts_dir, tmp_path, val_every=1, val_clicks=1, selection_cases=2)
    assert main(args) == 0
    assert "training initial on 14 case(s), selecting the weights on 2" in capsys.readouterr().err
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["select_on_val"] and config["val_cases"] == 2
    metadata = torch.load(out / "best.pt", weights_only=True)["metadata"]
    assert "val" in metadata and "selection" not in metadata  # chosen on the set-aside patients, not "last"
    assert main(args + ["--set", "selection_cases=16", "--out", str(tmp_path / "r2")]) == 1
    assert "leaves no training case" in capsys.readouterr().err


def test_ct_only_ptv70_configuration_on_openkbp(tiny_openkbp, tmp_path, capsys):
    """The second configuration: CT alone, the OpenKBP PTV70 target, both stages, then ``sparsert refine``."""
    common = ["--data", f"cases:{tiny_openkbp}", "--all-cases", "--steps", "1", "--cache", str(tmp_path / "cache"),
              "--device", "cpu", "--set", "data.modalities=[ct]", "--set", "data.structure=PTV70",
              "--set", "data.spacing=[6.0,6.0,9.0]", "--set", "data.size_kji=[16,32,32]",
              "--set", "network.channels=[4,8,16]", "--set", "network.strides=[2,2]", "--set", "network.num_res_units=0"]
    assert main(["train", "initial", "--out", str(tmp_path / "initial"), *common]) == 0
    assert main(["train", "refine", "--out", str(tmp_path / "refine"), "--initial", str(tmp_path / "initial" / "best.pt"),
                 "--set", "max_interactions=2", *common]) == 0
    model = load_icr_model(tmp_path / "refine" / "best.pt")
    assert model.spec.kind == "two_stage" and model.spec.modalities == ("ct",) and model.spec.structure == "PTV70"

    case = open_dataset(f"cases:{tiny_openkbp}").load("pt_201")
    ct_path = write_image(case.images["ct"], tmp_path / "ct.nrrd")
    clicks = tmp_path / "clicks.json"
    clicks.write_text(json.dumps([{"ijk": [32, 32, 20], "positive": True}]))
    out = tmp_path / "ptv70.seg.nrrd"
    capsys.readouterr()
    assert main(["refine", "--image", str(ct_path), "--clicks", str(clicks), "--model", str(tmp_path / "refine" / "best.pt"),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert "'PTV70'" in capsys.readouterr().out
    seg = read_segmentation(out)
    assert seg.names == ["PTV70"] and seg.geometry.matches(case.images["ct"].geometry)

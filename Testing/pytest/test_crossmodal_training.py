"""Cross-modal training: scribbles, variants, a short run through the CLI, cross-validated evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from crossmodal_testdata import COARSE, TINY_NETWORK, one_thread  # noqa: F401 (one_thread: fixture)

from sparsert.cli.main import main
from sparsert.crossmodal.preprocess import PreprocessConfig
from sparsert.data.datasets import open_dataset
from sparsert.data.sts import read_sts_case
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.segmentation_io import write_segmentation
from sparsert.training.config import load_config
from sparsert.training.crossmodal import (
    CrossModalTrainConfig,
    PatchSampler,
    ScribbleConfig,
    TrainingCase,
    case_scribbles,
    check_config,
    train_crossmodal,
    variant_settings,
)
from sparsert.training.crossmodal_cache import CrossModalCase, cached_cases, load_case, preprocess_case
from sparsert.training.run import RunFolder

CASES = ("STS_025", "STS_008", "STS_024")  # the three smallest
COARSE_INPUTS = PreprocessConfig(spacing_mm=COARSE)
# A tiny network on a coarse grid, two steps: seconds per run.
TINY = {
    "steps": 2, "threads": 1, "batch_size": 1, "patch": [16, 32, 32], "log_every": 1, "val_every": 2,
    "model.channels": list(TINY_NETWORK["channels"]), "model.convs": list(TINY_NETWORK["convs"]),
    "losses.crf.radius": 1, "preprocessing.spacing_mm": list(COARSE),
}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data_dir(sts_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sts3")
    for name in CASES:
        (folder / name).symlink_to(sts_dir / name, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def cached(data_dir, tmp_path_factory) -> list[Path]:
    return cached_cases(open_dataset(data_dir), COARSE_INPUTS, tmp_path_factory.mktemp("cache"))


def test_simulated_scribbles_cover_a_fraction_of_a_percent(sts_dir):
    case = preprocess_case(open_dataset(f"sts:{sts_dir / 'STS_010'}"), "STS_010", PreprocessConfig())
    scribbles = case_scribbles(case, ScribbleConfig(), np.random.default_rng(0))
    coverage = (scribbles.foreground.sum() + scribbles.background.sum()) / case.mask.size
    assert 0.001 < coverage < 0.01
    assert (scribbles.foreground & ~case.mask).sum() == 0
    assert (scribbles.background & case.mask).sum() == 0
    # Automatic background: every voxel beyond the margin from the tumour scribbles.
    auto = case_scribbles(case, ScribbleConfig(background="automatic"), np.random.default_rng(0))
    distance = ndimage.distance_transform_edt(~auto.foreground, sampling=case.geometry.spacing_kji)
    assert np.array_equal(auto.background, distance > 40.0)
    assert auto.background.mean() > 0.3


def test_scribbles_from_files(sts_dir, tmp_path):
    dataset = open_dataset(f"sts:{sts_dir / 'STS_025'}")
    case = preprocess_case(dataset, "STS_025", COARSE_INPUTS)
    original = read_sts_case(sts_dir / "STS_025")
    ct_grid, gtv = original.geometry, original.structures["GTV_Mass"].mask
    line = np.zeros_like(gtv)
    k = int(np.median(np.nonzero(gtv)[0]))
    line[k] = ndimage.binary_erosion(gtv[k], iterations=3)
    write_segmentation(Segmentation(ct_grid, [Segment("Tumour", line)]), tmp_path / "STS_025.seg.nrrd")
    with pytest.raises(InputError, match=r"no background scribbles; draw some or set scribbles.background=automatic"):
        case_scribbles(case, ScribbleConfig(source=str(tmp_path)), np.random.default_rng(0))
    auto = case_scribbles(case, ScribbleConfig(source=str(tmp_path), background="automatic"), np.random.default_rng(0))
    assert auto.foreground.any() and auto.background.any()
    assert (auto.foreground & ~case.mask).sum() == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    write_segmentation(Segmentation(ct_grid, [Segment("Background", line)]), empty / "STS_025.seg.nrrd")
    with pytest.raises(InputError, match=r"STS_025\.seg\.nrrd: no tumour scribble \(segments: Background\)"):
        case_scribbles(case, ScribbleConfig(source=str(empty)), np.random.default_rng(0))


@pytest.mark.parametrize(
    "variant, present, absent",
    [
        ("cmfnet", {"partial_ce", "crf_ct", "crf_mr", "consistency"}, {"dense"}),
        ("ssl", {"partial_ce"}, {"crf_ct", "crf_mr", "consistency", "dense"}),
        ("imc", {"partial_ce", "consistency"}, {"crf_ct", "crf_mr"}),
        ("full-supervision", {"dense"}, {"partial_ce", "crf_ct", "consistency"}),
    ],
)
def test_variants_train_with_their_losses(cached, tmp_path, variant, present, absent):
    config = load_config(CrossModalTrainConfig, None, {**variant_settings(variant), **TINY})
    run = RunFolder(tmp_path / variant)
    result = train_crossmodal(cached[:2], cached[2:], run, config, device="cpu")
    assert result["step"] == 2
    logged = set(json.loads((run.path / "metrics.jsonl").read_text().splitlines()[0]))
    assert present <= logged and not absent & logged


def test_ct_only_variant(cached, data_dir, tmp_path):
    config = load_config(CrossModalTrainConfig, None, {**variant_settings("ct-only"), **TINY})
    paths = cached_cases(open_dataset(data_dir), config.preprocessing, tmp_path / "cache")
    case = load_case(paths[0])
    assert np.array_equal(case.mr, case.ct)
    assert train_crossmodal(paths[:2], paths[2:], RunFolder(tmp_path / "run"), config, device="cpu")["step"] == 2


def test_augmented_patches_keep_scribbles_on_the_tumour(cached):
    case = case_scribbles(load_case(cached[0]), ScribbleConfig(), np.random.default_rng(0))
    config = load_config(CrossModalTrainConfig, None, {**TINY, "foreground_p": 1.0, "augment.affine": True})
    sampler = PatchSampler([case], config, iter([0] * 30), np.random.default_rng(1))
    moved = 0
    for _ in range(30):
        patch = sampler.sample()
        assert all(patch[k].shape == (16, 32, 32) for k in patch)
        assert all(patch[k].dtype == bool for k in PatchSampler.MASKS)
        # Masks move with the image: scribbles stay inside the (moved) tumour and off each other.
        assert not (patch["foreground"] & ~patch["mask"]).any()
        assert not (patch["foreground"] & patch["background"]).any()
        # Voxels brought in from beyond the patch are outside: no scribble there, no CRF term.
        outside = ~patch["inside"]
        # Unmoved, the inside is a box (the crop, padded at one end where it met the volume's edge).
        k, j, i = (patch["inside"].any(axis=axes) for axes in ((1, 2), (0, 2), (0, 1)))
        moved += not np.array_equal(patch["inside"], k[:, None, None] & j[None, :, None] & i[None, None, :])
        assert not patch["foreground"][outside].any() and not patch["background"][outside].any()
    assert 5 <= moved <= 25  # half the patches are transformed


def test_intensity_augmentation_scales_and_shifts_each_modality():
    config = load_config(CrossModalTrainConfig, None, {**TINY, "foreground_p": 0.0})
    shape = (16, 32, 32)
    ramp = np.linspace(0, 1, np.prod(shape), dtype=np.float32).reshape(shape)
    case = CrossModalCase("x", ramp, 2 * ramp, *(np.ones(shape, bool),) * 3, None)
    item = TrainingCase(case, np.zeros(shape, bool), np.zeros(shape, bool))
    changed = {"ct": 0, "mr": 0}
    for seed in range(20):
        plain = PatchSampler([item], config, iter([0]), np.random.default_rng(seed)).sample()
        config.augment.intensity = True
        augmented = PatchSampler([item], config, iter([0]), np.random.default_rng(seed)).sample()
        config.augment.intensity = False
        for name in changed:
            scale, shift = np.polyfit(plain[name].ravel(), augmented[name].ravel(), 1)
            assert abs(scale - 1) <= 0.1 + 1e-4 and abs(shift) <= 0.1 + 1e-4
            changed[name] += not np.allclose(plain[name], augmented[name])
    assert all(10 <= n <= 19 for n in changed.values())  # three times in four on average


def test_weight_average_is_what_is_kept(cached, tmp_path):
    config = load_config(CrossModalTrainConfig, None, {**TINY, "weight_average": 0.5})
    run = RunFolder(tmp_path / "ema")
    train_crossmodal(cached[:2], cached[2:], run, config, device="cpu")
    kept = torch.load(run.best_path, weights_only=True)["model"]
    checkpoint = torch.load(run.path / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(kept[k], v) for k, v in checkpoint["average"].items())
    assert any(not torch.equal(kept[k], v) for k, v in checkpoint["model"].items() if v.is_floating_point())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant": "stacked-pce", "losses.lambda_ct": 0.2}, "stacked network has no CT and MR outputs"),
        ({"patch": (20, 32, 32)}, r"must be multiples of 16"),
        ({"fold": 5}, "fold 5 out of range for 5 folds"),
        ({"scribbles.background": "none"}, "scribbles.background 'none' unknown"),
    ],
)
def test_bad_settings(changes, message):
    overrides = dict(changes)
    if "variant" in overrides:
        overrides = {**variant_settings(overrides.pop("variant")), **overrides}
    with pytest.raises(InputError, match=message):
        check_config(load_config(CrossModalTrainConfig, None, overrides))
    with pytest.raises(InputError, match="unknown variant 'best'"):
        variant_settings("best")


def test_train_and_evaluate_through_the_cli(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    cache = tmp_path / "cache"
    settings = [arg for k, v in {**TINY, "folds": 3}.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    argv = ["train", "crossmodal", "--data", str(data_dir), "--out", str(out), "--fold", "1",
            "--cache", str(cache), "--device", "cpu", *settings]
    assert main(argv) == 0
    for name in ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best.pt"):
        assert (out / name).is_file(), name
    metadata = torch.load(out / "best.pt", weights_only=True)["metadata"]
    assert len(metadata["test_cases"]) == 1 and len(metadata["train_cases"]) == 2
    assert set(metadata["test_cases"]) | set(metadata["train_cases"]) == set(CASES)
    assert "fold 1 finished at step 2" in capsys.readouterr().out
    # A second run into the same folder is refused unless resumed.
    assert main(argv) == 1
    assert "holds a checkpoint already" in capsys.readouterr().err
    # A preset is chosen with --variant: --set variant=... would record a name without its settings.
    assert main(argv[:-2] + ["--out", str(tmp_path / "other"), "--set", "variant=ssl"]) == 1
    assert "choose an experiment with --variant ssl" in capsys.readouterr().err

    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(out), "--out", str(metrics),
                 "--csv", str(tmp_path / "cases.csv"), "--device", "cpu"]) == 0
    result = json.loads(metrics.read_text())
    assert result["n_cases"] == 1 and result["cases"][0]["case_id"] == metadata["test_cases"][0]
    assert 0.0 <= result["summary"]["dice"]["mean"] <= 1.0
    assert "over 1 held-out case(s) from 1 model(s)" in capsys.readouterr().out
    assert result["fine_tuning"] is None and not result["cases"][0]["fine_tuned"]
    assert result["contexts"] and result["precision"] == "auto"
    # The ablation: the whole-volume pass alone, in float32.
    single = tmp_path / "single.json"
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(out), "--out", str(single),
                 "--single-context", "--precision", "float32", "--device", "cpu"]) == 0
    single_result = json.loads(single.read_text())
    assert not single_result["contexts"] and single_result["precision"] == "float32"
    # The same held-out case after fine-tuning on simulated user scribbles of it.
    tuned = tmp_path / "tuned.json"
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(out), "--out", str(tuned),
                 "--fine-tune-steps", "2", "--device", "cpu"]) == 0
    tuned_result = json.loads(tuned.read_text())
    assert tuned_result["cases"][0]["fine_tuned"] and tuned_result["fine_tuning"]["steps"] == 2
    assert tuned_result["fine_tuning"]["scribble_fraction"] == 0.3
    capsys.readouterr()
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(tmp_path / "cache")]) == 1
    assert "no best.pt" in capsys.readouterr().err


def test_train_on_every_case_through_the_cli(data_dir, tmp_path, capsys):
    out = tmp_path / "all"
    settings = [arg for k, v in {**TINY, "folds": 3}.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    argv = ["train", "crossmodal", "--data", str(data_dir), "--out", str(out), "--all-cases",
            "--cache", str(tmp_path / "cache"), "--device", "cpu", *settings]
    assert main(argv + ["--fold", "1"]) == 1
    assert "leave out --fold" in capsys.readouterr().err
    assert main(argv) == 0
    metadata = torch.load(out / "best.pt", weights_only=True)["metadata"]
    assert sorted(metadata["train_cases"]) == sorted(CASES) and metadata["test_cases"] == []
    assert metadata["fold"] is None
    assert "on every case finished at step 2; no held-out case" in capsys.readouterr().out
    # Nothing is left to score it on, and the message says why; its training cases can be scored as a check.
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(out), "--device", "cpu"]) == 1
    assert "trained on every case (--all-cases)" in capsys.readouterr().err
    metrics = tmp_path / "training.json"
    assert main(["evaluate", "crossmodal", "--data", str(data_dir), "--runs", str(out), "--training-cases",
                 "--out", str(metrics), "--device", "cpu"]) == 0
    result = json.loads(metrics.read_text())
    assert result["cases_scored"] == "training" and sorted(c["case_id"] for c in result["cases"]) == sorted(CASES)
    assert "over 3 training case(s) from 1 model(s)" in capsys.readouterr().out

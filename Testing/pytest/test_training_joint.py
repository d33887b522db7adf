"""End-to-end training of the scribble-guided dose model (scribbles -> completed masks -> dose)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparsert.cli.main import main
from sparsert.completion.scm import load_scm
from sparsert.data.datasets import open_dataset
from sparsert.dose.inputs import ORGAN_CHANNELS, TARGET_CHANNEL
from sparsert.dose.predict import load_dose_model
from sparsert.io.segmentation_io import write_segmentation
from sparsert.io.volume import read_image
from sparsert.training.cache import cached_cases, load_cached
from sparsert.training.joint import JointNet, JointTrainConfig, completed_channels, step_losses
from sparsert.scribbles.simulate import simulate_scribbles
from sparsert.training.scm import simulate_for


@pytest.fixture(scope="module")
def tiny_scm(tiny_openkbp, tmp_path_factory):
    root = tmp_path_factory.mktemp("scm")
    assert main(["train", "scm", "--data", str(tiny_openkbp), "--out", str(root / "run"), "--device", "cpu",
                 "--cache", str(root / "cache"), "--steps", "1", "--set", "val_every=100", "--set", "workers=0",
                 "--set", "model.encoder_channels=[4,8,16,32]", "--set", "model.decoder_channels=[4,8]"]) == 0
    return root / "run" / "best.pt"


@pytest.fixture(scope="module")
def tiny_case(tiny_openkbp, tmp_path_factory):
    data = open_dataset(str(tiny_openkbp))
    return load_cached(cached_cases(data, tmp_path_factory.mktemp("cache"), data.case_ids()[:1])[0])


def test_dose_loss_reaches_the_completion_network(tiny_scm, tiny_dose_run, tiny_case):
    run, _ = tiny_dose_run
    model = JointNet(load_scm(str(tiny_scm)), load_dose_model(str(run / "best.pt")))
    config = JointTrainConfig(completion_weight=0.0, flip_p=0.0)
    losses = step_losses(model, tiny_case, config, np.random.default_rng(0))
    assert set(losses) >= {"dose_l1", "completion_dense", "total"}
    losses["total"].backward()
    scm_grads = [p.grad.abs().sum() for p in model.scm.decoder.parameters() if p.grad is not None]
    assert scm_grads and float(sum(scm_grads)) > 0  # only the dose loss was weighted: it flowed back

    # Forward, the completed channels are the binary masks the dose network sees at inference.
    scribbles, background = simulate_for(tiny_case, list(range(len(tiny_case.names))), np.random.default_rng(1))
    with torch.no_grad():
        channels = completed_channels(model.scm, tiny_case, scribbles, background)[0]
    assert channels.shape[1:] == tiny_case.body.shape
    organs = channels[ORGAN_CHANNELS]
    assert set(torch.unique(organs).tolist()) <= {0.0, 1.0}
    assert torch.unique(channels[TARGET_CHANNEL]).numel() <= 1 + sum(n.startswith("PTV") for n in tiny_case.names)


def test_train_joint_cli_writes_both_models_usable_for_dose_from_scribbles(tiny_scm, tiny_dose_run, tiny_openkbp, tmp_path):
    dose_run, _ = tiny_dose_run
    run = tmp_path / "joint"
    args = ["train", "joint", "--data", str(tiny_openkbp), "--out", str(run), "--device", "cpu", "--cache", str(tmp_path / "c"),
            "--set", f"scm_init={tiny_scm}", "--set", f"dose_init={dose_run / 'best.pt'}", "--set", "val_every=2",
            "--set", "log_every=1", "--set", "checkpoint_every=1"]
    assert main(args + ["--steps", "2"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["total"]) for r in records if "total" in r)
    val = [r for r in records if "val_dose_score" in r]
    assert [r["step"] for r in val] == [0, 2]  # the starting weights are scored first: a candidate too
    assert all(np.isfinite(r["val_dose_score"]) and 0 <= r["val_mean_dice"] <= 1 for r in val)
    kept = torch.load(run / "dose.pt", weights_only=True)["metadata"]
    assert kept["val"]["dose_score"] == min(r["val_dose_score"] for r in val)
    assert main(args + ["--steps", "3", "--resume"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3

    # The two model files are ordinary completion and dose models: the scribble path uses them as they are.
    dose_model = load_dose_model(str(run / "dose.pt"))
    assert dose_model.window is not None and len(dose_model.working_spacing_kji) == 3
    folder = tiny_openkbp / open_dataset(str(tiny_openkbp)).case_ids()[0]
    case = open_dataset(str(tiny_openkbp)).load(folder.name)
    body = read_image(folder / "possible_dose_mask.nrrd")
    scribbles = write_segmentation(simulate_scribbles(case.structures, seed=0, body_mask=body.array > 0),
                                   tmp_path / "scribbles.seg.nrrd")
    out = tmp_path / "dose.nrrd"
    assert main(["dose", "--ct", str(folder / "ct.nrrd"), "--scribbles", str(scribbles), "--body",
                 str(folder / "possible_dose_mask.nrrd"), "--model", str(run / "dose.pt"), "--completion-model",
                 str(run / "scm.pt"), "--out", str(out), "--device", "cpu"]) == 0
    assert read_image(out).array.max() > 0

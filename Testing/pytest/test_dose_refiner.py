"""The full-resolution dose refiner: trained on a frozen dose model, shipped inside an ordinary dose model file."""

from __future__ import annotations

import json

import numpy as np
import torch

from sparsert.cli.main import main
from sparsert.data.datasets import open_dataset
from sparsert.dose.grid import as_batch
from sparsert.dose.inputs import BODY_CHANNEL, dose_inputs
from sparsert.dose.predict import load_dose_checkpoint, predict_dose, refined_dose
from sparsert.models.dose_rmt import DoseRefiner


def refiner_args(tiny_dose_run, out, *extra: str) -> list[str]:
    base, args = tiny_dose_run
    data, cache = args[args.index("--data") + 1], args[args.index("--cache") + 1]
    return ["train", "dose-refiner", "--data", data, "--cache", cache, "--out", str(out), "--device", "cpu",
            "--set", f"base={base / 'best.pt'}", "--set", "crop=[16,32,32]", "--set", "val_every=2",
            "--set", "log_every=1", "--set", "width=4", *extra]


def test_an_untrained_refiner_leaves_the_dose_as_it_was(tiny_dose_run, tiny_openkbp, tmp_path):
    out = tmp_path / "still"
    assert main(refiner_args(tiny_dose_run, out, "--steps", "2", "--set", "lr=0")) == 0
    base, refined = load_dose_checkpoint(tiny_dose_run[0] / "best.pt"), load_dose_checkpoint(out / "best.pt")
    assert refined.net.refiner is not None and base.net.refiner is None
    assert (refined.working_spacing_kji, refined.window, refined.domain, refined.prompt) == (
        base.working_spacing_kji, base.window, base.domain, base.prompt)
    # The base network's weights are kept as they were.
    for name, value in base.net.state_dict().items():
        assert torch.equal(value, refined.net.state_dict()[name]), name
    case = open_dataset(str(tiny_openkbp)).load(open_dataset(str(tiny_openkbp)).case_ids()[0])
    ct = case.images["ct"]
    one = predict_dose(base, ct, case.structures, case.possible_dose_mask).array
    two = predict_dose(refined, ct, case.structures, case.possible_dose_mask).array
    assert np.array_equal(one, two)  # the last convolution starts at zero


def test_a_trained_refiner_changes_the_dose_and_is_used_by_the_dose_command(tiny_dose_run, tiny_openkbp, tmp_path):
    out = tmp_path / "trained"
    assert main(refiner_args(tiny_dose_run, out, "--steps", "4", "--set", "lr=0.01")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "l1" in r] == [1, 2, 3, 4]
    assert any(np.isfinite(r.get("val_dose_score", np.nan)) for r in records)
    model = load_dose_checkpoint(out / "best.pt")
    metadata = torch.load(out / "best.pt", weights_only=True)["metadata"]
    assert metadata["refiner"]["prompt"] == "mask" and metadata["refiner"]["base"].endswith("best.pt")

    folder = tiny_openkbp / open_dataset(str(tiny_openkbp)).case_ids()[0]
    common = ["dose", "--ct", str(folder / "ct.nrrd"), "--body", str(folder / "possible_dose_mask.nrrd"),
              "--structures", str(folder / "structures.seg.nrrd"), "--device", "cpu"]
    assert main([*common, "--model", str(out / "best.pt"), "--out", str(tmp_path / "refined.nrrd")]) == 0
    assert main([*common, "--model", str(tiny_dose_run[0] / "best.pt"), "--out", str(tmp_path / "base.nrrd")]) == 0
    from sparsert.io.volume import read_image

    refined, base = read_image(tmp_path / "refined.nrrd").array, read_image(tmp_path / "base.nrrd").array
    body = read_image(folder / "possible_dose_mask.nrrd").array > 0
    assert not np.array_equal(refined, base) and not refined[~body].any()
    # A refiner is not refined again.
    assert main(refiner_args(tiny_dose_run, tmp_path / "again", "--steps", "1", "--set", f"base={out / 'best.pt'}")) == 1


def test_refining_the_body_box_equals_refining_the_whole_volume(tiny_openkbp):
    torch.manual_seed(0)
    refiner = DoseRefiner(BODY_CHANNEL + 1, 4).eval()
    torch.nn.init.normal_(refiner.body[-1].weight, std=0.1)  # a refiner that changes the dose
    case = open_dataset(str(tiny_openkbp)).load(open_dataset(str(tiny_openkbp)).case_ids()[0])
    inputs = dose_inputs(case.images["ct"], case.structures, case.possible_dose_mask)
    channels = as_batch(inputs.channels)
    channels[:, BODY_CHANNEL, :5] = 0  # a body box smaller than the volume
    dose = torch.rand((1, 1, *channels.shape[2:]))
    with torch.no_grad():
        boxed, whole = refined_dose(refiner, channels, dose), refiner(channels, dose)
    body = channels[:, BODY_CHANNEL : BODY_CHANNEL + 1] > 0
    assert torch.allclose(boxed[body], whole[body], atol=1e-6)
    assert torch.equal(boxed[:, :, :2], dose[:, :, :2])  # beyond the box's reach the dose is left alone
    assert not torch.allclose(whole[body], dose[body])

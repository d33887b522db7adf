"""Training the scribble completion module: a real (tiny) run through the CLI, then resuming it; its samples."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml

from sparsert.cli.main import main
from sparsert.completion import complete_scm
from sparsert.data.datasets import open_dataset
from sparsert.scribbles.simulate import simulate_scribbles
from sparsert.training.cache import cached_cases, load_cached
from sparsert.training.scm import ScribbleSamples, SCMTrainConfig


def test_train_scm_cli_writes_a_resumable_run(tiny_openkbp, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSERT_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    args = ["train", "scm", "--data", str(tiny_openkbp), "--out", str(run), "--device", "cpu",
            "--set", "val_every=2", "--set", "checkpoint_every=1", "--set", "log_every=1", "--set", "workers=0",
            "--set", "model.encoder_channels=[4,8,16,32]", "--set", "model.decoder_channels=[4,8]"]
    assert main(args + ["--steps", "2"]) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["steps"] == 2 and config["model"]["encoder_channels"] == [4, 8, 16, 32]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "total" in r]
    assert [r["step"] for r in losses] == [1, 2]
    assert all(np.isfinite(r[k]) for r in losses for k in ("dense", "partial_ce", "compactness", "separation", "boundary"))
    assert any("val_mean_dice" in r for r in records)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2

    # The same folder without --resume is refused; with it, training continues from step 2.
    assert main(args + ["--steps", "3"]) == 1
    assert main(args + ["--steps", "3", "--resume"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3

    # The trained weights evaluate beside a classical peer on the same scribbles.
    out = tmp_path / "eval.json"
    assert main(["evaluate", "completion", "--data", str(tiny_openkbp), "--methods", "scm", "growcut", "--max-cases", "1",
                 "--model", str(run / "best.pt"), "--device", "cpu", "--out", str(out)]) == 0
    evaluation = json.loads(out.read_text())
    assert set(evaluation["summary"]) == {"scm", "growcut"}
    scm_rows = [r for r in evaluation["results"] if r["method"] == "scm"]
    assert len(scm_rows) == 1 and set(scm_rows[0]["dice"]) == set(scm_rows[0]["coverage"])

    # The best weights load as a completion model and complete scribbles on the training grid.
    case = open_dataset(str(tiny_openkbp)).load(open_dataset(str(tiny_openkbp)).case_ids()[0])
    scribbles = simulate_scribbles(case.structures, seed=0, body_mask=case.possible_dose_mask.array)
    completed = complete_scm(case.images["ct"], scribbles, model=str(run / "best.pt"), device="cpu")
    assert completed.names == case.structures.names
    for seg in completed.segments:
        assert seg.mask[scribbles[seg.name].mask].all()  # scribbled voxels are always inside


def test_mirrored_samples_are_the_same_draws_mirrored(tiny_openkbp, tmp_path):
    paths = cached_cases(open_dataset(str(tiny_openkbp)), root=tmp_path)
    plain = next(iter(ScribbleSamples(paths, SCMTrainConfig())))
    mirrored = next(iter(ScribbleSamples(paths, SCMTrainConfig(flip_p=1.0))))
    assert plain["scribbles"].any()
    for key in ("image", "scribbles", "background", "truth", "boundary"):
        assert torch.equal(mirrored[key], plain[key].flip(-1)), key


def test_cache_filled_by_several_processes_matches_one_process(tiny_openkbp, tmp_path):
    dataset = open_dataset(str(tiny_openkbp))
    seen: list[str] = []
    sequential = cached_cases(dataset, root=tmp_path / "one")
    parallel = cached_cases(dataset, root=tmp_path / "two", on_case=seen.append, workers=2)
    assert sorted(seen) == sorted(dataset.case_ids())  # every case reported once
    assert [p.name for p in parallel] == [p.name for p in sequential]
    for a, b in zip(sequential, parallel):
        x, y = load_cached(a), load_cached(b)
        assert x.names == y.names
        for key in ("image", "masks", "body", "boundary"):
            assert np.array_equal(getattr(x, key), getattr(y, key)), key

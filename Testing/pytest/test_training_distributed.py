"""Distributed training: real two-process Gloo runs under torchrun on the CPU, and the rank-aware pieces."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import TINY_NET
from sparsert.cli.main import main
from sparsert.cli.train_cmd import steps_from_epochs
from sparsert.training.config import load_config
from sparsert.training.distributed import sample_order
from sparsert.training.dose import DoseTrainConfig

HERE = Path(__file__).resolve().parent


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ARGS``, one thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One preprocessed-data cache for the runs of this module."""
    return tmp_path_factory.mktemp("cache")


def test_replicas_stay_equal_and_the_same_seed_trains_the_same_weights(tiny_openkbp, cache, tmp_path):
    done = torchrun(str(HERE / "distributed_worker.py"), str(tmp_path), str(tiny_openkbp), str(cache))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    # Each rank starts from its own seed and trains on its own data: only averaged gradients (and
    # DDP's initial copy of rank 0's weights) keep the replicas equal, as the control shows.
    assert ranks[0]["synced"] == ranks[1]["synced"]
    assert ranks[0]["unsynced"] != ranks[1]["unsynced"]
    assert ranks[0]["refused"] and ranks[1]["refused"]
    # The dose trainer (which itself refuses diverged replicas at the end) twice with the same seed.
    first, second = (torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("a", "b"))
    assert first["step"] == second["step"] == 2
    assert all(torch.equal(first["model"][name], second["model"][name]) for name in first["model"])


def test_a_failing_rank_ends_the_run_instead_of_leaving_its_peers_waiting(tmp_path):
    done = torchrun(str(HERE / "distributed_failing_worker.py"))
    assert done.returncode != 0
    assert "rank 0 failed on purpose" in done.stderr


def test_torchrun_smoke_run_of_the_readme(tiny_openkbp, cache, tmp_path):
    done = torchrun("-m", "sparsert", "train", "dose", "--data", str(tiny_openkbp), "--max-cases", "2", "--epochs", "1",
                    "--out", str(tmp_path / "run"), "--device", "cpu", "--cache", str(cache), *TINY_NET, "--set", "threads=1")
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count("finished at step 1") == 1  # rank 0 alone reports
    run = tmp_path / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    # One training case (the other validates), 2 per step on each of 2 processes: one step per epoch.
    assert config["world_size"] == 2 and config["steps"] == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "total" in r] == [1]  # one writer
    assert any("val_dose_score" in r for r in records)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 1
    assert (run / "best.pt").is_file()
    assert load_config(DoseTrainConfig, run / "config.yaml", {}).steps == 1  # world_size is a record, not a setting


def test_ranks_share_out_the_cases_of_every_epoch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    shares = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        shares.append(list(islice(sample_order(6, seed=3), 6)))  # two epochs of three cases per rank
    for epoch in (slice(0, 3), slice(3, 6)):
        assert sorted(shares[0][epoch] + shares[1][epoch]) == list(range(6))
    assert shares[0][:3] != shares[0][3:]  # reshuffled every epoch
    monkeypatch.setenv("RANK", "1")
    assert list(islice(sample_order(6, seed=3, start=2), 4)) == shares[1][2:]  # a resumed run goes on


def test_epochs_set_the_steps_and_exclude_steps(tmp_path, capsys):
    config = SimpleNamespace(steps=0)
    steps_from_epochs(argparse.Namespace(epochs=2.5), config, cases=3, per_step=2)
    assert config.steps == 4  # ceil(2.5 x 3 / 2)
    with pytest.raises(SystemExit):
        main(["train", "dose", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "2", "--epochs", "1"])
    assert "not allowed with argument" in capsys.readouterr().err

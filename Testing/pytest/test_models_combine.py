"""Model files made from others: weight averages and a dose network given another's refiner."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sparsert.dose.predict import load_dose_checkpoint
from sparsert.errors import InputError
from sparsert.models.combine import average_weights, with_refiner
from sparsert.models.model_file import read_model_file
from sparsert.models.dose_rmt import DoseNet, DoseNetConfig

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "combine_models.py"
SMALL = DoseNetConfig(widths=(4, 8, 8, 8), heads=2, depth=1)
METADATA = {"working_spacing_kji": [5.0, 3.90625, 3.90625], "crop": [16, 32, 32], "prompt": "completed",
            "val": {"dose_score": 4.0}}


def model_file(path: Path, seed: int, config: DoseNetConfig = SMALL) -> Path:
    torch.manual_seed(seed)
    net = DoseNet(config)
    torch.save({"model": net.state_dict(), "config": config.to_dict(), "metadata": METADATA}, path)
    return path


def test_the_average_of_three_files_is_the_mean_of_each_weight_and_loads_as_a_dose_model(tmp_path):
    paths = [model_file(tmp_path / f"m{seed}.pt", seed) for seed in range(3)]
    states = [read_model_file(p) for p in paths]
    averaged = average_weights(states, [str(p) for p in paths])
    name = next(k for k, v in states[0]["model"].items() if v.is_floating_point() and v.numel() > 1)
    expected = (states[0]["model"][name] + states[1]["model"][name] + states[2]["model"][name]) / 3
    assert torch.allclose(averaged["model"][name], expected, atol=1e-6)
    assert not torch.allclose(averaged["model"][name], states[0]["model"][name])
    assert averaged["metadata"]["averaged_from"] == [str(p) for p in paths]
    assert "val" not in averaged["metadata"]  # the first file's scores are not the average's
    torch.save(averaged, tmp_path / "avg.pt")
    model = load_dose_checkpoint(tmp_path / "avg.pt")
    assert torch.allclose(model.net.state_dict()[name], expected, atol=1e-6)


def test_only_files_of_one_network_are_averaged(tmp_path):
    one = read_model_file(model_file(tmp_path / "a.pt", 0))
    other = read_model_file(model_file(tmp_path / "b.pt", 1, replace(SMALL, widths=(4, 8, 8, 16))))
    with pytest.raises(InputError, match="another network config"):
        average_weights([one, other], ["a.pt", "b.pt"])
    with pytest.raises(InputError, match="at least two"):
        average_weights([one], ["a.pt"])


def test_a_refiner_moves_onto_another_network_and_only_the_refiner(tmp_path):
    base = read_model_file(model_file(tmp_path / "base.pt", 0))
    refined = read_model_file(model_file(tmp_path / "refined.pt", 1, replace(SMALL, refiner_width=4)))
    combined = with_refiner(base, refined, "refined.pt")
    assert combined["config"]["refiner_width"] == 4
    assert combined["metadata"]["refiner"]["taken_from"] == "refined.pt"
    torch.save(combined, tmp_path / "combined.pt")
    net = load_dose_checkpoint(tmp_path / "combined.pt").net
    for name, value in net.state_dict().items():
        source = refined if name.startswith("refiner.") else base
        assert torch.equal(value, source["model"][name]), name
    assert net.refiner is not None
    with pytest.raises(InputError, match="has no refiner"):
        with_refiner(base, base)
    with pytest.raises(InputError, match="already has a refiner"):
        with_refiner(combined, refined)


def test_the_script_writes_a_new_file_and_never_overwrites_one(tmp_path):
    paths = [str(model_file(tmp_path / f"m{seed}.pt", seed)) for seed in range(2)]
    out = tmp_path / "avg.pt"
    done = subprocess.run([sys.executable, str(SCRIPT), "average", str(out), *paths], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = out.read_bytes()
    again = subprocess.run([sys.executable, str(SCRIPT), "average", str(out), *paths], capture_output=True, text=True)
    assert again.returncode != 0 and "exists" in again.stderr
    assert out.read_bytes() == written
    missing = subprocess.run([sys.executable, str(SCRIPT), "refiner", str(tmp_path / "r.pt"), paths[0],
                              str(tmp_path / "none.pt")], capture_output=True, text=True)
    assert missing.returncode == 2 and "not found" in missing.stderr

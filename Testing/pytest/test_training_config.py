"""Training settings from defaults, YAML files and --set overrides."""

from __future__ import annotations

import pytest

from sparsert.errors import InputError
from sparsert.models.icr import ICRSpec
from sparsert.models.scm import SCMConfig
from sparsert.training.config import load_config
from sparsert.training.icr import ICRTrainConfig


def test_overrides_reach_nested_settings_with_their_types(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("lr: 2.0e-4\nnetwork:\n  channels: [8, 16, 32]\n")
    # YAML reads 1e-3 (no dot) as a string; a float setting still gets a number.
    config = load_config(ICRTrainConfig, settings, {"weight_decay": "1e-3", "network.strides": [2, 2], "steps": None})
    assert config.lr == 2.0e-4 and config.weight_decay == 1e-3 and isinstance(config.weight_decay, float)
    assert config.network.channels == (8, 16, 32) and config.network.strides == (2, 2)
    assert config.steps == ICRTrainConfig().steps


def test_bad_settings_are_named():
    with pytest.raises(InputError, match=r"config.lr: expected a number, got 'fast'"):
        load_config(ICRTrainConfig, None, {"lr": "fast"})
    with pytest.raises(InputError, match=r"config.network: unknown setting\(s\) width"):
        load_config(ICRTrainConfig, None, {"network.width": 3})


def test_model_configs_read_back_from_weight_files_the_same_way():
    # Saved configs are JSON-like: lists where the dataclasses hold tuples, optional tuples included.
    saved = {**ICRSpec().to_dict(), "modalities": ["ct"], "spacing": [1.0, 1.0, 2.0]}
    saved["network"]["channels"] = [8, 16, 32]
    spec = ICRSpec.from_dict(saved)
    assert spec.modalities == ("ct",) and spec.spacing == (1.0, 1.0, 2.0) and spec.network.channels == (8, 16, 32)
    assert ICRSpec.from_dict({**saved, "spacing": None}).spacing is None
    with pytest.raises(InputError, match=r"scribble-completion network config: unknown setting\(s\) depth"):
        SCMConfig.from_dict({**SCMConfig().to_dict(), "depth": 5})

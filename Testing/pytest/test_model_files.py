"""Every loader reads model files through one reader: a missing, damaged or foreign file (another
task's shipped model among them) gets one clear InputError naming what was expected, never a traceback."""

from __future__ import annotations

import pytest
import torch

from sparsert.completion.scm import load_scm_checkpoint
from sparsert.crossmodal.inference import load_checkpoint
from sparsert.dose.predict import load_dose_checkpoint
from sparsert.errors import InputError
from sparsert.models.icr import load_icr_model
from sparsert.models.model_file import read_model_file
from sparsert.resources import resources_dir

MODELS = resources_dir() / "Models"
LOADERS = {
    "scribble-completion checkpoint": (load_scm_checkpoint, "dose-mask-v5.pt"),
    "dose-prediction checkpoint": (load_dose_checkpoint, "scm-v6.pt"),
    "cross-modal segmentation checkpoint": (load_checkpoint, "icr-sts-petct-v4.pt"),
    "click-refinement checkpoint": (load_icr_model, "crossmodal-v1.pt"),
}


@pytest.mark.parametrize("kind", LOADERS)
def test_each_loader_names_what_a_file_is_not(kind, tmp_path):
    load, foreign = LOADERS[kind]
    with pytest.raises(InputError, match=r"missing\.pt: model file not found"):
        load(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("not a model")
    with pytest.raises(InputError, match=r"garbage\.pt: not a readable model file \("):
        load(garbage)
    partial = tmp_path / "partial.pt"
    torch.save({"model": {}}, partial)
    with pytest.raises(InputError, match=rf"partial\.pt: not a {kind} \(expected the 'model' and 'config' entries"):
        load(partial)
    # Another task's model is a readable model file, so the message says which kind was expected.
    with pytest.raises(InputError, match=rf"{foreign.replace('.', '[.]')}: not a {kind} \("):
        load(MODELS / foreign)


def test_the_reader_returns_the_dict_training_writes(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.ones(2)}, "config": {"a": 1}, "metadata": {}}, path)
    state = read_model_file(path)
    assert state["config"] == {"a": 1} and torch.equal(state["model"]["w"], torch.ones(2))

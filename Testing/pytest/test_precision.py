"""The number type of inference: ``--precision auto|float32|bfloat16``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsert.device import inference_autocast, native_bfloat16, resolve_precision
from sparsert.dose.inputs import dose_inputs
from sparsert.dose.predict import DoseModel, predict_from_inputs
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.models.dose_rmt import DoseNet, DoseNetConfig

CPU = torch.device("cpu")


def test_precision_choices():
    assert resolve_precision("float32", CPU) == torch.float32
    assert resolve_precision("BFloat16", CPU) == torch.bfloat16
    auto = torch.bfloat16 if native_bfloat16(CPU) else torch.float32
    assert resolve_precision("auto", CPU) == resolve_precision(None, CPU) == auto
    assert resolve_precision("auto", torch.device("cuda")) == torch.float32  # speed is no issue on a GPU
    with pytest.raises(InputError, match="unknown precision 'half'.*float32"):
        resolve_precision("half", CPU)


def test_autocast_runs_convolutions_in_bfloat16_only_when_asked():
    net = torch.nn.Conv3d(1, 2, 3)
    x = torch.rand(1, 1, 4, 4, 4)
    with inference_autocast(net, "bfloat16"):
        assert net(x).dtype == torch.bfloat16
    with inference_autocast(net, "float32"):
        assert net(x).dtype == torch.float32


def test_bfloat16_dose_stays_close_to_float32():
    shape, spacing = (16, 32, 32), (2.0, 2.0, 2.0)
    geometry = Geometry(shape, spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    hu = np.full(shape, -1000.0, np.float32)
    hu[:, 4:28, 4:28] = 40.0
    target = np.zeros(shape, bool)
    target[6:10, 12:20, 12:20] = True
    inputs = dose_inputs(Volume(hu, geometry), Segmentation(geometry, [Segment("PTV70", target)]))
    torch.manual_seed(2)  # an untrained network: its dose is arbitrary but not near zero
    model = DoseModel(DoseNet(DoseNetConfig(widths=(4, 8, 8, 16))).eval(), spacing, window=(8, 16, 16))
    full = predict_from_inputs(model, inputs, spacing, precision="float32")
    half = predict_from_inputs(model, inputs, spacing, precision="bfloat16")
    assert half.dtype == np.float32 and full.any()
    difference, body = np.abs(half - full), inputs.body > 0
    assert 0 < difference.max() < 0.05 * full.max()
    assert difference[body].mean() < 0.05 * full[body].mean()

"""The optimiser side shared by the trainers: the weight average and its checkpointed state."""

import pytest
import torch
from torch import nn

from sparsert.training.optimisation import Optimisation, WeightAverage


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2))


def _step(optimisation: Optimisation, model: nn.Module) -> None:
    optimisation.update(model(torch.randn(2, 1, 4, 4, 4)).square().mean())


def test_weight_average_follows_the_weights_with_its_decay():
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimisation = Optimisation(model, lr=0.1, weight_decay=0.0, steps=10, average_decay=0.75)
    _step(optimisation, model)
    now = model.state_dict()
    average = optimisation.average.state
    for name in ("0.weight", "1.running_mean", "1.running_var"):
        assert not torch.equal(now[name], start[name])
        assert torch.allclose(average[name], 0.75 * start[name] + 0.25 * now[name])
    assert average["1.num_batches_tracked"] == now["1.num_batches_tracked"] == 1  # counters are copied
    shipped = optimisation.result_model()
    assert shipped is not model and torch.equal(shipped.state_dict()["0.weight"], average["0.weight"])
    assert torch.equal(model.state_dict()["0.weight"], now["0.weight"])  # the training model is untouched


def test_without_average_the_model_itself_is_the_result():
    model = _model()
    optimisation = Optimisation(model, lr=0.1, weight_decay=0.0, steps=10)
    _step(optimisation, model)
    assert optimisation.result_model() is model and "average" not in optimisation.state(1)


def test_weight_average_resumes_from_the_checkpoint():
    model = _model()
    optimisation = Optimisation(model, lr=0.1, weight_decay=0.0, steps=10, average_decay=0.9)
    _step(optimisation, model)
    state = optimisation.state(1)
    resumed_model = _model()
    resumed = Optimisation(resumed_model, lr=0.1, weight_decay=0.0, steps=10, average_decay=0.9)
    assert resumed.restore(state) == (1, None)
    for name, value in optimisation.average.state.items():
        assert torch.equal(resumed.average.state[name], value)
    plain = Optimisation(_model(), lr=0.1, weight_decay=0.0, steps=10, average_decay=0.9)
    with pytest.raises(ValueError, match="keeps no weight average"):
        plain.restore(Optimisation(_model(), lr=0.1, weight_decay=0.0, steps=10).state(0))


def test_decay_outside_the_open_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        WeightAverage(_model(), 1.0)

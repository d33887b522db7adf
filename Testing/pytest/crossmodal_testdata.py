"""Helpers of the cross-modal tests: a tiny network, its checkpoint, and one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sparsert.crossmodal.preprocess import PreprocessConfig
from sparsert.models.cmfnet import CmFNetConfig, build_network
from sparsert.training.run import RunFolder

TINY_NETWORK = dict(channels=(2, 4, 4, 8, 8), convs=(0, 1, 1, 1, 1))
COARSE = (4.0, 4.0, 6.0)  # working grid of the test networks (mm): small volumes, fast tests


@pytest.fixture
def one_thread():
    """Tiny networks on small volumes: a second thread only adds synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def save_tiny_checkpoint(folder: Path, *, bias: float = 0.0, ct_only: bool = False) -> Path:
    """A randomly initialised tiny network whose fused head is biased (+: all tumour, -: none),
    saved as a training run saves it (``RunFolder.save_best``)."""
    torch.manual_seed(0)
    config = CmFNetConfig(**TINY_NETWORK)
    net = build_network(config)
    with torch.no_grad():
        net.mm_decoder.head.bias.fill_(bias)
    run = RunFolder(folder)
    preprocessing = PreprocessConfig(spacing_mm=COARSE, ct_only=ct_only)
    run.save_best(net.state_dict(), config.to_dict(), {"preprocessing": preprocessing.to_dict()})
    return run.best_path

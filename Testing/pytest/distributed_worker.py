"""Run by test_training_distributed.py under torchrun as ``distributed_worker.py OUT DATA CACHE``.

First a small model trains on each rank's own data; ``OUT/rank<R>.json`` records a digest of its
weights after a few steps through :func:`sparsert.training.distributed.wrap` (DDP) and after the same
steps without it (a control: the replicas must then differ), and whether
:func:`~sparsert.training.distributed.finish` refused replicas that differ. Then the dose trainer runs
twice with the same seed on two cases of the data set DATA (cached in CACHE), into ``OUT/a`` and ``OUT/b``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn

from sparsert.data.datasets import open_dataset
from sparsert.training import distributed
from sparsert.training.cache import cached_cases
from sparsert.training.config import load_config
from sparsert.training.dose import DoseTrainConfig, train_dose
from sparsert.training.run import RunFolder

TINY_DOSE = {"steps": 2, "threads": 1, "crop": [16, 32, 32], "log_every": 1, "model.widths": [4, 8, 8, 16],
             "model.heads": 2, "model.depth": 1}


def mse(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model(x), y)


def trained(train_step: nn.Module, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> str:
    """Digest of the weights after three SGD steps."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        optimiser.zero_grad()
        train_step(x, y).backward()
        optimiser.step()
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return hashlib.sha256(weights.numpy().tobytes()).hexdigest()


def progress(message: str) -> None:
    """Say how far this rank got (the test shows it when the run fails)."""
    print(f"rank {distributed.rank()}: {message}", flush=True)


def main(out: Path, data: str, cache: Path) -> None:
    device = distributed.setup("cpu")
    distributed.seed_process(0)  # a seed per rank: different initial weights and data on each
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    synced = trained(distributed.wrap(model, mse, device), model, x, y)
    distributed.finish(model, None)

    control = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    unsynced = trained(distributed.Objective(control, mse, autocast=False), control, x, y)
    try:
        distributed.finish(control, None)
        refused = False
    except RuntimeError:
        refused = True
    record = {"world_size": distributed.world_size(), "synced": synced, "unsynced": unsynced, "refused": refused}
    (out / f"rank{distributed.rank()}.json").write_text(json.dumps(record))
    progress("replica checks done")

    dataset = open_dataset(data)
    with distributed.main_first():
        paths = cached_cases(dataset, cache, dataset.case_ids()[:2])
    for name in ("a", "b"):
        train_dose(paths, [], RunFolder(out / name), load_config(DoseTrainConfig, None, TINY_DOSE), device=device)
        progress(f"dose training {name} done")
    distributed.cleanup()
    progress("left the process group")
    distributed.exit_process(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))

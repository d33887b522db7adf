"""Run by test_training_distributed.py under torchrun: rank 0 fails in the command while rank 1 goes
on to the end-of-training check, a collective rank 0 never reaches."""

from __future__ import annotations

import argparse

import torch

from sparsert.cli.train_cmd import in_process_group
from sparsert.errors import InputError
from sparsert.training import distributed


def command(args: argparse.Namespace) -> int:
    if distributed.rank() == 0:
        raise InputError("rank 0 failed on purpose")
    distributed.finish(torch.nn.Linear(2, 1), None)
    return 0


if __name__ == "__main__":
    raise SystemExit(in_process_group(command)(argparse.Namespace(device="cpu")))

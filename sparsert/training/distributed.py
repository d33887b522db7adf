"""Data-parallel training under ``torchrun``: one process per device, gradients averaged by DDP.

``torchrun --nproc_per_node N -m sparsert train ...`` starts N processes with WORLD_SIZE, RANK and
LOCAL_RANK set; without them (a plain ``sparsert train``) every function here is the one-process case
and costs nothing. The trainers take everything that depends on the rank from this module:

- :func:`setup` joins the process group: NCCL on GPUs (one per LOCAL_RANK), Gloo on the CPU;
- :func:`seed_process` and :func:`sample_order` give each rank its own randomness and its own share of
  the training cases (torch's DistributedSampler);
- :func:`wrap` puts the model and its losses under DistributedDataParallel, with bf16 autocast on GPUs;
- only rank 0 validates and writes the run folder (:class:`~sparsert.training.run.RunFolder` asks
  :func:`is_main`); the other ranks meanwhile wait in the next step's gradient all-reduce;
- :func:`finish` checks that the replicas ended equal and hands every rank rank 0's result.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from sparsert.device import resolve_device

T = TypeVar("T")

# Rank 0 validates alone while the other ranks wait in a collective: allow a long validation.
TIMEOUT = timedelta(hours=2)
_SEED_STRIDE = 1_000_003


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process logs and writes files (rank 0, or the only process)."""
    return rank() == 0


def setup(device: str | torch.device | None = "auto") -> torch.device:
    """This process's device, after joining torchrun's process group (once per process).

    Under torchrun a CUDA device means the GPU numbered LOCAL_RANK.
    """
    device = resolve_device(device)
    if world_size() == 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE come from torchrun's environment.
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return device


def cleanup() -> None:
    """Leave the process group once every rank has finished its last collective (so that no rank closes
    its connections while a peer is still on the last exchange)."""
    if dist.is_initialized():
        barrier()
        dist.destroy_process_group()


def abandon() -> None:
    """Leave the process group without waiting for the other ranks (after an error on this one: they
    may be waiting in a collective it will never reach)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End this torchrun worker now with ``code``, its output flushed, without the interpreter's teardown.

    After a clean :func:`cleanup` a Gloo worker still aborts now and then while the interpreter shuts
    down ("terminate called without an active exception", about 1 run in 12 of the two-process test),
    and torchrun then reports a finished run as failed. Call only when every file is written and closed.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first and on the other ranks after it, so that only rank 0 writes
    shared files (cache entries) and the others find them complete."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def seed_process(seed: int) -> int:
    """Seed torch and ``random`` for this rank and return the seed used (for numpy generators).

    Rank 0 keeps ``seed`` itself, so the initial weights, which DDP copies from rank 0 to the others,
    are those of a one-process run; the other ranks get distinct seeds for their own augmentation.
    """
    own = seed + _SEED_STRIDE * rank()
    torch.manual_seed(own)
    random.seed(own)
    return own


def sample_order(n: int, seed: int, start: int = 0) -> Iterator[int]:
    """Endless indices into ``n`` training cases for this rank, from its ``start``-th on (a resumed run).

    Every epoch all ranks shuffle ``range(n)`` alike (``seed`` must be the same on every rank) and rank
    r takes positions r, r + W, ... (torch's DistributedSampler): the ranks see different cases and
    together cover each case once per epoch (padded by repeats to a multiple of the world size W).
    """
    per_epoch = math.ceil(n / world_size())
    epoch, offset = divmod(start, per_epoch)
    while True:
        sampler = DistributedSampler(range(n), num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        yield from list(sampler)[offset:]
        epoch, offset = epoch + 1, 0


class Objective(nn.Module):
    """A model with the function computing its training losses: ``forward(*inputs) = losses(model, *inputs)``.

    DDP averages the gradients of whatever its module's forward used, so wrapping the objective rather
    than the model also covers models trained through other methods than ``forward``, or through several
    calls per step (the SCM's encoder and per-structure decoder).
    """

    def __init__(self, model: nn.Module, losses: Callable[..., Any], autocast: bool) -> None:
        super().__init__()
        self.model = model
        self.losses = losses
        self.autocast = autocast

    def forward(self, *inputs: Any, **options: Any) -> Any:
        with torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else nullcontext():
            return self.losses(self.model, *inputs, **options)


def wrap(
    model: nn.Module, losses: Callable[..., Any], device: torch.device, *,
    mixed_precision: bool = True, find_unused_parameters: bool = False,
) -> nn.Module:
    """The training step ``losses(model, *inputs)`` as a module to call instead of ``losses``.

    Under torchrun it is wrapped in DDP, which copies rank 0's weights to every rank now and averages
    the gradients over the ranks in each ``backward()``. ``mixed_precision``: bf16 autocast of the
    step on GPUs that support it (bf16 needs no loss scaling); never on the CPU, where it would halve the
    step time on CPUs with AVX512-BF16 but the bf16 weight gradient of a 3D convolution over an input two
    voxels deep comes out wrong (torch 2.13, oneDNN), as can happen at a U-Net's deepest level.
    ``find_unused_parameters``: the losses leave some parameters without a gradient in some steps.
    """
    autocast = mixed_precision and device.type == "cuda" and torch.cuda.is_bf16_supported()
    objective = Objective(model, losses, autocast)
    if world_size() == 1:
        return objective
    # Gradients of weights with a size-1 dimension (depthwise convolutions) may report another stride
    # there than DDP's bucket; the memory layout is the same, so the warning is noise.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    # No device_ids: the trainers move their inputs themselves (the SCM's samples stay on the CPU).
    return DistributedDataParallel(objective, find_unused_parameters=find_unused_parameters)


def finish(model: nn.Module, result: T) -> T:
    """Check that training left the same weights on every rank; return rank 0's ``result`` on every rank."""
    if world_size() == 1:
        return result
    weights = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    low, high = weights.clone(), weights.clone()
    dist.all_reduce(low, dist.ReduceOp.MIN)
    dist.all_reduce(high, dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"model replicas differ after training (by up to {float((high - low).max()):.3g}): "
                           "gradients were not averaged over all ranks")
    box = [result]
    dist.broadcast_object_list(box, src=0)
    return box[0]

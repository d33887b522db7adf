"""Choosing the torch device for ``--device auto|cpu|cuda[:N]``."""

from __future__ import annotations

import torch

from sparsert.errors import InputError


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn a user's device choice into a torch device, checking that it exists.

    ``auto`` (or None) takes the first GPU when one is present, else the CPU.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"device '{spec}' requested but no CUDA GPU is available (use --device cpu or auto)")
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"device '{spec}' requested but only {torch.cuda.device_count()} GPU(s) are present")
        return torch.device("cuda", index)
    raise InputError(f"unknown device '{spec}': use auto, cpu, cuda or cuda:N")

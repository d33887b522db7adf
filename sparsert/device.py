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


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` is a CPU that computes bfloat16 in hardware (AVX512-BF16 or AMX); other CPUs
    emulate it, slower than float32."""
    if device.type != "cpu":
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(spec: str | None, device: torch.device) -> torch.dtype:
    """The number type of inference for ``--precision auto|float32|bfloat16``.

    ``auto`` takes bfloat16 on CPUs that compute it natively (the completion and dose networks then take
    about half their float32 time; the model cards give the effect on the scores) and float32 elsewhere,
    GPUs included (fast enough in float32).
    """
    spec = (spec or "auto").strip().lower()
    if spec not in PRECISIONS:
        raise InputError(f"unknown precision '{spec}': use {', '.join(PRECISIONS)}")
    if spec == "auto":
        return torch.bfloat16 if native_bfloat16(device) else torch.float32
    return torch.bfloat16 if spec == "bfloat16" else torch.float32


def inference_autocast(net: torch.nn.Module, precision: str | None) -> torch.autocast:
    """A context running ``net``'s operators that benefit from it in the resolved precision
    (torch autocast; float32 stays untouched)."""
    device = next(net.parameters()).device
    dtype = resolve_precision(precision, device)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

"""Reading the model files that training writes: a dict of ``model`` (the state dict), ``config`` (the
network's settings) and ``metadata``.

Every loader reads through here, so that a file of another kind, a damaged file or a missing one gets
one clear message naming what was expected instead of a traceback from deep inside torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from sparsert.errors import InputError


def read_model_file(path: str | Path, kind: str = "model file") -> dict:
    """A model file's dict (on the CPU), or an InputError saying why ``path`` is not a ``kind``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: model file not found") from None
    except Exception as exc:  # noqa: BLE001 - torch raises assorted types for files that are not checkpoints
        raise InputError(f"{path}: not a readable model file ({_first_line(exc)})") from None
    if not isinstance(state, dict) or not {"model", "config"} <= state.keys():
        raise InputError(f"{path}: not a {kind} (expected the 'model' and 'config' entries a training run writes)")
    return state


@contextmanager
def building_from(path: str | Path, kind: str) -> Iterator[None]:
    """Turns what a readable model file of another kind raises while a network is built from it into an
    InputError naming the file and ``kind``."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = _first_line(exc)
        if isinstance(exc, InputError):
            detail = detail.removeprefix(f"{path}: ")  # the config's own message, which may name the file too
        else:
            detail = f"{type(exc).__name__}: {detail}"
        raise InputError(f"{path}: not a {kind} ({detail})") from None


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's run to many lines), or its type when it has none."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]

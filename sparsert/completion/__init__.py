"""Scribble completion: dense structures from a few scribbles.

Every method follows one contract, ``complete(image, scribbles, **options) ->
CompletedSegmentation`` (see :mod:`sparsert.completion.contract`), and is listed in
:data:`METHODS` by the name the CLI, the Slicer modules and the evaluation use.
"""

from collections.abc import Callable

from sparsert.completion.contract import CompletedSegmentation, is_target, targets_overlap_organs
from sparsert.completion.peers import complete_growcut, complete_random_walker
from sparsert.errors import InputError

METHODS: dict[str, Callable[..., CompletedSegmentation]] = {
    "growcut": complete_growcut,
    "randomwalker": complete_random_walker,
}


def get_method(name: str) -> Callable[..., CompletedSegmentation]:
    """The completion method registered as ``name``."""
    if name not in METHODS:
        raise InputError(f"unknown completion method '{name}' (available: {', '.join(METHODS)})")
    return METHODS[name]


__all__ = [
    "METHODS",
    "CompletedSegmentation",
    "complete_growcut",
    "complete_random_walker",
    "get_method",
    "is_target",
    "targets_overlap_organs",
]

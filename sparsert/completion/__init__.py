"""Scribble completion: dense structures from a few scribbles.

Every method follows one contract, ``complete(image, scribbles, **options) ->
CompletedSegmentation`` (see :mod:`sparsert.completion.contract`), and is listed in
:data:`METHODS` by the name the CLI, the Slicer modules and the evaluation use.
"""

import inspect
from collections.abc import Callable

from sparsert.completion.contract import CompletedSegmentation, is_target, targets_overlap_organs
from sparsert.completion.peers import complete_growcut, complete_random_walker
from sparsert.completion.scm import complete_scm
from sparsert.errors import InputError

METHODS: dict[str, Callable[..., CompletedSegmentation]] = {
    "scm": complete_scm,
    "growcut": complete_growcut,
    "randomwalker": complete_random_walker,
}


def get_method(name: str) -> Callable[..., CompletedSegmentation]:
    """The completion method registered as ``name``."""
    if name not in METHODS:
        raise InputError(f"unknown completion method '{name}' (available: {', '.join(METHODS)})")
    return METHODS[name]


def completer(name: str, **options) -> Callable[..., CompletedSegmentation]:
    """``complete(image, scribbles)`` for method ``name`` with ``options``; options a method does
    not take (``device`` for the classical peers) are dropped, so callers need not know which runs a model."""
    method = get_method(name)
    accepted = inspect.signature(method).parameters
    kept = {k: v for k, v in options.items() if k in accepted}
    return lambda image, scribbles: method(image, scribbles, **kept)


__all__ = [
    "METHODS",
    "CompletedSegmentation",
    "complete_growcut",
    "complete_random_walker",
    "complete_scm",
    "completer",
    "get_method",
    "is_target",
    "targets_overlap_organs",
]

"""Dataclass configs read back from weight files or the command line."""

from __future__ import annotations


def tuples_from_lists(values: dict) -> dict:
    """The same settings with lists as tuples: YAML, JSON and ``--set`` give lists where configs hold tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}

"""Dataclass settings from plain dicts (YAML files, ``--set`` overrides, configs saved in weight files)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from sparsert.errors import InputError

C = TypeVar("C")


def unfit_weights(source: str, theirs: dict[str, Any], ours: dict[str, Any], keys: list[str]) -> InputError:
    """The error for starting weights (from ``source``) whose network settings ``keys`` differ from ours."""
    return InputError(
        f"{source}: its weights do not fit the configured network ("
        + ", ".join(f"{k} {theirs[k]} there, {ours[k]} here" for k in keys) + ")"
    )


def from_dict(cls: type[C], data: dict[str, Any], where: str = "config") -> C:
    """Build dataclass ``cls`` from a (nested) dict, rejecting unknown keys by name."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(fields)})")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(hint, value or {}, f"{where}.{name}")
        elif isinstance(value, list) and _accepts_tuple(hint):
            values[name] = tuple(value)
        elif hint is float and isinstance(value, str):
            values[name] = _as_float(value, f"{where}.{name}")
        else:
            values[name] = value
    return cls(**values)


def _as_float(value: str, where: str) -> float:
    # YAML 1.1 reads exponent forms without a dot (1e-3) as strings.
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{where}: expected a number, got '{value}'") from None


def _accepts_tuple(hint: Any) -> bool:
    # YAML and JSON have no tuples: a list stands for a tuple field, optional ones included.
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(typing.get_origin(arg) is tuple for arg in typing.get_args(hint))
    return typing.get_origin(hint) is tuple

"""Training configurations: nested dataclasses filled from YAML files and command-line overrides."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sparsert.errors import InputError

C = TypeVar("C")

# Written into a run's config.yaml beside the settings (sparsert.training.run.RunFolder.write_config):
# facts of that run, skipped when the file is read back as settings.
RECORDS = ("world_size",)


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
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
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


def load_config(cls: type[C], path: str | Path | None, overrides: dict[str, Any]) -> C:
    """Defaults, then the YAML file, then ``overrides`` (dotted keys such as ``losses.boundary``)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise InputError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: not valid YAML ({exc})") from None
        for key in RECORDS:
            data.pop(key, None)
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(cls, data, str(path) if path else "config")

"""Training configurations: nested dataclasses filled from YAML files and command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from sparsert.config_dicts import from_dict
from sparsert.errors import InputError

C = TypeVar("C")

# Written into a run's config.yaml beside the settings (sparsert.training.run.RunFolder.write_config):
# facts of that run, skipped when the file is read back as settings.
RECORDS = ("world_size",)


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

"""Tabular outputs: strict JSON (NaN and infinities become null, which strict readers need) and CSV."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from sparsert.io.output import writable


def json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def write_json(data: dict, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``data`` as indented strict JSON; refuses to replace a file unless ``overwrite``."""
    path = writable(path, overwrite)
    path.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    return path


def write_csv(rows: list[dict], path: str | Path, overwrite: bool = False) -> Path:
    """Write rows (dicts with the same keys) as CSV; None and NaN become empty cells."""
    path = writable(path, overwrite)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows([{k: ("" if v is None else v) for k, v in json_safe(row).items()} for row in rows])
    return path

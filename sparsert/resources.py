"""Where the extension's shared resources (sample data, model registry, weights) and the shared data sets live."""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    """The top-level ``Resources/`` folder ($SPARSERT_RESOURCES overrides it)."""
    override = os.environ.get("SPARSERT_RESOURCES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "Resources"


def sample_data_dir() -> Path:
    return resources_dir() / "SampleData"


def shared_data_dir() -> Path:
    """The public data sets of development, tests and benchmarks: ``../shared/data`` beside the
    checkout ($SPARSERT_SHARED_DATA overrides it)."""
    override = os.environ.get("SPARSERT_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "data"

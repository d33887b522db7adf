"""Shared fixtures: where the real data lives, and small temporary outputs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """The shared data folder (``../shared/data`` beside the checkout, or $SPARSERT_SHARED_DATA)."""
    return Path(os.environ.get("SPARSERT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").exists():
        pytest.fail(f"shared data not found at {path}; set SPARSERT_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def openkbp_nifti(shared_data: Path) -> Path:
    return shared_data / "openkbp-nifti"


@pytest.fixture(scope="session")
def openkbp_csv(shared_data: Path) -> Path:
    return shared_data / "openkbp" / "validation-pats"


@pytest.fixture(scope="session")
def sts_dir(shared_data: Path) -> Path:
    return shared_data / "sts"

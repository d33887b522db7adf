"""Shared fixtures: where the real data lives, and small temporary outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsert.cli.main import main
from sparsert.data.case import Case
from sparsert.data.case_folder import write_case_folder
from sparsert.data.datasets import open_dataset
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.resources import shared_data_dir


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


CROP = (slice(40, 80), slice(30, 94), slice(30, 94))


def _cropped(case: Case) -> Case:
    g = case.geometry
    shape = tuple(s.stop - s.start for s in CROP)
    geometry = Geometry(shape, g.spacing, g.origin, g.direction)  # origin irrelevant for training
    crop = lambda v: Volume(np.ascontiguousarray(v.array[CROP]), geometry)  # noqa: E731
    structures = Segmentation(geometry, [Segment(s.name, s.mask[CROP], s.color) for s in case.structures.segments if s.mask[CROP].any()])
    return Case(case.case_id, {"ct": crop(case.images["ct"])}, structures, crop(case.dose), crop(case.possible_dose_mask))


@pytest.fixture(scope="session")
def tiny_openkbp(tmp_path_factory, openkbp_nifti) -> Path:
    """Three OpenKBP validation cases cropped around the neck (40 x 64 x 64), as case folders."""
    root = tmp_path_factory.mktemp("tiny")
    source = open_dataset(f"cases:{openkbp_nifti / 'validation'}")
    for case_id in source.case_ids()[:3]:
        write_case_folder(_cropped(source.load(case_id)), root / case_id)
    return root


TINY_NET = ["--set", "model.widths=[4,8,8,16]", "--set", "model.heads=2", "--set", "model.depth=1",
            "--set", "crop=[16,32,32]", "--set", "batch=2", "--set", "val_every=2", "--set", "log_every=1",
            "--set", "checkpoint_every=1"]


@pytest.fixture(scope="session")
def tiny_dose_run(tiny_openkbp, tmp_path_factory) -> tuple[Path, list[str]]:
    """A dose run of 2 steps on three cropped OpenKBP cases (two to train, one to validate): its folder
    and the command that made it."""
    root = tmp_path_factory.mktemp("dose")
    run = root / "run"
    args = ["train", "dose", "--data", str(tiny_openkbp), "--out", str(run), "--device", "cpu",
            "--cache", str(root / "cache"), *TINY_NET]
    assert main(args + ["--steps", "2"]) == 0
    return run, args

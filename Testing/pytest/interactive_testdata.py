"""Helpers of the interactive-refinement tests: tiny random models and small real crops."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sparsert.io.volume import Geometry, Volume, read_image
from sparsert.models.icr import ICRModel, ICRNetConfig, ICRSpec
from sparsert.training.run import RunFolder

# Three levels, no residual units: fast enough for tests, sizes must be multiples of 4.
TINY_NETWORK = ICRNetConfig(channels=(4, 8, 16), strides=(2, 2), num_res_units=0)


def tiny_model(kind: str = "two_stage", modalities=("ct", "pet"), spacing=None, seed: int = 0, norm: str = "instance") -> ICRModel:
    torch.manual_seed(seed)
    network = replace(TINY_NETWORK, norm=norm)
    spec = ICRSpec(kind=kind, modalities=tuple(modalities), spacing=spacing, network=network)
    return ICRModel(spec).eval()


def save_model(model: ICRModel, folder: Path) -> Path:
    """The model file exactly as a training run writes it (``RunFolder.save_best``)."""
    run = RunFolder(folder)
    run.save_best(model.state_dict(), model.spec.to_dict(), {"step": 0})
    return run.best_path


def crop(volume: Volume, start_kji, size_kji) -> Volume:
    """A sub-volume with its geometry (origin moved to the first kept voxel)."""
    g = volume.geometry
    box = tuple(slice(s, s + n) for s, n in zip(start_kji, size_kji))
    origin = (g.ijk_to_lps() @ np.array([start_kji[2], start_kji[1], start_kji[0], 1.0]))[:3]
    geometry = Geometry(tuple(size_kji), g.spacing, tuple(float(o) for o in origin), g.direction)
    return Volume(np.ascontiguousarray(volume.array[box]), geometry)


def sts_ct_pet(sts_dir: Path, case: str = "STS_001") -> tuple[Volume, Volume]:
    """A 12 x 48 x 48 CT crop around the tumour of ``case``, and the case's whole PET (its own grid)."""
    ct = read_image(sts_dir / case / "CT_image.nii.gz")
    pet = read_image(sts_dir / case / "PET_image.nii.gz")
    return crop(ct, (20, 76, 76), (12, 48, 48)), pet

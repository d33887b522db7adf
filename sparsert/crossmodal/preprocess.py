"""Network inputs from a CT and an MR: checks, registration through physical space, normalisation.

Training and inference share this code so that the network always sees the same inputs:

1. the CT must be in Hounsfield units (a +1024 storage offset is undone); the MR may have any
   intensity scale but must show contrast;
2. the MR is resampled through physical space (optionally through a user transform) onto the CT
   grid, remembering which voxels it covers (its field of view);
3. the region of interest is the bounding box of the body (CT above ``body_threshold_hu``) where
   the MR covers it (the whole body in CT-only mode): there is nothing to fuse beyond the MR;
4. CT and MR are resampled onto a working grid of fixed spacing over that region, aligned with the
   CT axes; the CT is windowed to 0..1, the MR z-scored over the body and clipped, and set to 0
   outside its field of view.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparsert.completion.contract import expanded_box
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, resample
from sparsert.config_dicts import from_dict
from sparsert.preprocessing.ct import ct_to_hu, soft_tissue_window
from sparsert.preprocessing.modalities import modality_mismatch

# Plausible Hounsfield units: air is about -1000, cortical bone and metal a few thousand.
_HU_RANGE = (-1500.0, 5000.0)
_MIN_CT_SPREAD_HU = 200.0


@dataclass
class PreprocessConfig:
    spacing_mm: tuple[float, float, float] = (2.0, 2.0, 3.0)  # working grid (i, j, k)
    ct_window_hu: tuple[float, float] = (-160.0, 240.0)  # mapped to 0..1
    mr_clip: float = 5.0  # z-scores beyond are clipped
    body_threshold_hu: float = -500.0
    ct_only: bool = False  # the CT feeds both branches (single-modality model)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessConfig":
        return from_dict(cls, data, "cross-modal preprocessing config")


@dataclass
class NetworkInputs:
    """Normalised CT and MR on the working grid (MR is the CT in CT-only mode)."""

    ct: np.ndarray  # (D, H, W) float32
    mr: np.ndarray  # (D, H, W) float32
    mr_valid: np.ndarray  # (D, H, W) bool: voxels the MR covers (all of them in CT-only mode)
    body: np.ndarray  # (D, H, W) bool
    geometry: Geometry  # the working grid


def read_transform(path: str | Path) -> sitk.Transform:
    """A transform file (ITK .tfm/.h5/.txt, e.g. saved by Slicer) mapping CT points into the MR's space."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: transform file not found")
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise InputError(f"{path}: not a readable transform ({lines[-1] if lines else 'unknown format'})") from None


def ct_in_hu(ct: Volume, name: str = "CT") -> np.ndarray:
    """The CT in HU (float32), or an InputError when its values cannot be Hounsfield units."""
    hu = ct_to_hu(ct.array)
    if not np.isfinite(hu).all():
        raise InputError(f"{name}: image contains NaN or infinite values")
    lo, hi = np.percentile(hu, [1, 99])
    if lo < _HU_RANGE[0] or hi > _HU_RANGE[1] or hi - lo < _MIN_CT_SPREAD_HU:
        raise InputError(
            f"{name}: values (range {ct.array.min():.4g}..{ct.array.max():.4g}; 1st-99th percentile {lo:.4g}..{hi:.4g} "
            "after offset correction) are not Hounsfield units; a CT in HU has air near -1000 and soft tissue near 0..100"
        )
    return hu


def body_mask(hu: np.ndarray, threshold_hu: float) -> np.ndarray:
    return hu > threshold_hu


def mr_on_grid(
    mr: Volume, target: Geometry, transform: sitk.Transform | None = None, name: str = "MR"
) -> tuple[Volume, np.ndarray]:
    """The MR resampled (linearly, in physical space) onto ``target``, and the voxels it covers."""
    covered = mr.with_array(np.ones(mr.geometry.shape, np.uint8))
    try:
        fov = resample(covered, target, label=True, transform=transform).array > 0
        image = resample(mr.with_array(mr.array.astype(np.float32)), target, transform=transform)
    except InputError as exc:
        raise InputError(f"{name}: {exc}; register the MR to the CT (or give the transform)") from None
    return image, fov


def working_geometry(
    reference: Geometry, box: tuple[slice, slice, slice], spacing_mm: tuple[float, float, float]
) -> Geometry:
    """A grid of ``spacing_mm`` on the reference's axes, covering the reference voxels of ``box``."""
    first = np.array([box[2].start, box[1].start, box[0].start, 1.0])
    origin = (reference.ijk_to_lps() @ first)[:3]
    extent = np.array([(s.stop - s.start - 1) for s in (box[2], box[1], box[0])]) * np.asarray(reference.spacing)
    size_ijk = np.floor(extent / np.asarray(spacing_mm) + 1e-6).astype(int) + 1
    return Geometry(
        shape=(int(size_ijk[2]), int(size_ijk[1]), int(size_ijk[0])),
        spacing=tuple(float(s) for s in spacing_mm),
        origin=tuple(float(o) for o in origin),
        direction=reference.direction,
    )


def mr_zscore(mr: np.ndarray, region: np.ndarray, clip: float, name: str = "MR") -> np.ndarray:
    """MR z-scored over ``region`` (robust to outliers: statistics of the 0.5..99.5 percentile range)."""
    values = mr[region]
    lo, hi = np.percentile(values, [0.5, 99.5])
    core = values[(values >= lo) & (values <= hi)]
    mean, std = float(core.mean()), float(core.std())
    if not std > 1e-6 * max(1.0, abs(mean)):
        raise InputError(
            f"{name}: intensity is constant over the body ({mean:.4g}); the MR shows no contrast to segment from"
        )
    return np.clip((mr - mean) / std, -clip, clip).astype(np.float32)


def prepare_inputs(
    ct: Volume,
    mr: Volume | None,
    config: PreprocessConfig,
    *,
    transform: sitk.Transform | None = None,
    ct_name: str = "CT",
    mr_name: str = "MR",
) -> NetworkInputs:
    """Network inputs on the working grid; ``mr=None`` (or a CT-only config) gives the CT-only inputs."""
    hu = ct_in_hu(ct, ct_name)
    body = body_mask(hu, config.body_threshold_hu)
    if not body.any():
        raise InputError(f"{ct_name}: no voxel above {config.body_threshold_hu:g} HU: the image holds no body")
    use_mr = mr is not None and not config.ct_only
    region = body
    if use_mr:
        if not np.isfinite(mr.array).all():
            raise InputError(f"{mr_name}: image contains NaN or infinite values")
        problem = modality_mismatch(mr.array, "mr")
        if problem:
            raise InputError(f"{mr_name}, given as the MR, {problem}: are the CT and the MR swapped?")
        _, fov = mr_on_grid(mr, ct.geometry, transform, mr_name)
        region = body & fov
        if not region.any():
            raise InputError(
                f"{mr_name}: covers none of the body in {ct_name} ({ct.geometry.describe()}); the images do not "
                "overlap in physical space: register the MR to the CT (or give the transform)"
            )
    box = expanded_box(region)
    grid = working_geometry(ct.geometry, box, config.spacing_mm)
    hu_grid = resample(Volume(hu, ct.geometry), grid, default=-1000.0).array
    lo, hi = config.ct_window_hu
    ct_input = soft_tissue_window(hu_grid, level=(lo + hi) / 2, width=hi - lo)
    body_grid = body_mask(hu_grid, config.body_threshold_hu)
    if use_mr:
        mr_grid, valid = mr_on_grid(mr, grid, transform, mr_name)
        stats_region = body_grid & valid
        if not stats_region.any():
            raise InputError(f"{mr_name}: covers none of the body in {ct_name} on the working grid")
        mr_input = np.where(valid, mr_zscore(mr_grid.array, stats_region, config.mr_clip, mr_name), 0.0).astype(np.float32)
    else:
        mr_input, valid = ct_input, np.ones(grid.shape, bool)
    return NetworkInputs(ct_input, mr_input, valid, body_grid, grid)

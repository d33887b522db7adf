"""The OpenKBP challenge CSV format, and the challenge's dose-prediction submission files.

A patient folder ``pt_N/`` holds ``ct.csv``, ``dose.csv`` (Gy), ``possible_dose_mask.csv``,
``voxel_dimensions.csv`` (mm) and one CSV per contoured structure. Each CSV is sparse: a header
``,data``, then a flat index into the 128^3 grid (C order) and the value (empty for masks).

The challenge's array axes run anterior->posterior, right->left, superior->inferior. Images are
returned as the OpenKBP NIfTI copies store them: i = axis 1, j = axis 0, k = axis 2, origin 0,
LPS direction diag(1, 1, -1), so that both readings give identical arrays and grids.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from sparsert.data.case import Case
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation, default_color
from sparsert.io.volume import GEOMETRY_ATOL, Geometry, Volume
from sparsert.io.output import writable

GRID = (128, 128, 128)
DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
HEADER = ",data"
CT, DOSE, POSSIBLE_DOSE_MASK, VOXEL_DIMENSIONS = "ct", "dose", "possible_dose_mask", "voxel_dimensions"
_NOT_STRUCTURES = {CT, DOSE, POSSIBLE_DOSE_MASK, VOXEL_DIMENSIONS}
_INT16 = np.iinfo(np.int16)


def is_openkbp_case(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f"{name}.csv").is_file() for name in (CT, VOXEL_DIMENSIONS))


def openkbp_geometry(voxel_dimensions) -> Geometry:
    """Grid of a patient from its voxel dimensions (mm, challenge axis 0, 1, 2 order)."""
    d0, d1, d2 = (float(v) for v in voxel_dimensions)
    return Geometry(shape=(GRID[2], GRID[0], GRID[1]), spacing=(d1, d0, d2), origin=(0.0, 0.0, 0.0), direction=DIRECTION)


def read_openkbp_case(folder: str | Path) -> Case:
    """Read ``pt_N/``: CT (int16), dose (float32, when present), possible-dose mask and structures (bool)."""
    folder = Path(folder)
    files = {name: folder / f"{name}.csv" for name in (CT, VOXEL_DIMENSIONS, DOSE, POSSIBLE_DOSE_MASK)}
    for required in (CT, VOXEL_DIMENSIONS):
        if not files[required].is_file():
            raise InputError(
                f"{files[required]}: file not found (OpenKBP patient folders hold ct.csv and voxel_dimensions.csv)"
            )
    files = {name: path for name, path in files.items() if path.is_file()}
    geometry = openkbp_geometry(_read_voxel_dimensions(files.pop(VOXEL_DIMENSIONS)))
    ct = _read_values(files[CT], np.float64)
    if not np.array_equal(ct, np.round(ct)) or ct.min() < _INT16.min or ct.max() > _INT16.max:
        raise InputError(f"{files[CT]}: CT values must be whole numbers within the int16 range")
    case = Case(folder.name, {CT: Volume(ct.astype(np.int16), geometry)}, source=folder, files=files)
    if DOSE in files:
        case.dose = Volume(_read_values(files[DOSE], np.float32), geometry)
    if POSSIBLE_DOSE_MASK in files:
        case.possible_dose_mask = Volume(_read_mask(files[POSSIBLE_DOSE_MASK]), geometry)
    structure_files = sorted(p for p in folder.glob("*.csv") if p.stem not in _NOT_STRUCTURES)
    segments = [Segment(p.stem, _read_mask(p), default_color(n)) for n, p in enumerate(structure_files)]
    case.structures = Segmentation(geometry, segments)
    files["structures"] = folder
    return case.validate()


def write_openkbp_prediction(dose: Volume, path: str | Path, overwrite: bool = False) -> Path:
    """Write a predicted dose as a challenge submission file ``pt_N.csv``.

    As the challenge's own code writes them: header ``,data``, then the flat index (challenge
    axes, C order) and value of every voxel with a positive dose.
    """
    path = Path(path)
    path = writable(path, overwrite)
    _require_challenge_grid(dose.geometry, f"{path}: dose")
    values = np.ascontiguousarray(_to_challenge_axes(dose.array), dtype=np.float32).ravel()
    if not np.isfinite(values).all():
        raise InputError(f"{path}: dose contains NaN or infinite values")
    if values.min() < 0:
        raise InputError(f"{path}: dose has negative values (min {values.min():.4g} Gy); clip it before writing")
    indices = np.flatnonzero(values > 0)
    # str() of a float32 is its shortest round-tripping form, so reading back is exact.
    rows = (f"{i},{v}" for i, v in zip(indices.tolist(), values[indices]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def read_openkbp_prediction(path: str | Path, reference: Geometry) -> Volume:
    """A submission file as a float32 dose on ``reference``, the grid of the patient it was made for."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    _require_challenge_grid(reference, f"{path}: reference grid")
    return Volume(_read_values(path, np.float32), reference)


def _read_values(path: Path, dtype) -> np.ndarray:
    """A sparse challenge CSV with values, as a dense [k, j, i] array."""
    table = _read_table(path, columns=(0, 1))
    if not np.isfinite(table[:, 1]).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    return _dense(table[:, 0], table[:, 1].astype(dtype))


def _read_mask(path: Path) -> np.ndarray:
    """A sparse challenge CSV listing the voxels of a mask, as a dense bool [k, j, i] array."""
    return _dense(_read_table(path, columns=(0,))[:, 0], np.ones(1, dtype=bool))


def _read_table(path: Path, columns: tuple[int, ...]) -> np.ndarray:
    try:
        with path.open() as f:
            header = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not readable ({exc})") from None
    if header.replace(" ", "") != HEADER:
        raise InputError(f"{path}: not an OpenKBP sparse CSV (expected the header '{HEADER}', got '{header[:40]}')")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty structure has no rows: not an error here
            table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=columns, ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: malformed row ({exc})") from None
    indices = table[:, 0]
    size = int(np.prod(GRID))
    if not np.array_equal(indices, np.round(indices)) or (indices.size and (indices.min() < 0 or indices.max() >= size)):
        raise InputError(f"{path}: indices must be whole numbers in 0..{size - 1}")
    return table


def _dense(indices: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Scatter values (one per index, or one for all) into the grid, challenge axes to [k, j, i]."""
    flat = np.zeros(int(np.prod(GRID)), dtype=values.dtype)
    flat[indices.astype(np.int64)] = values
    return np.ascontiguousarray(flat.reshape(GRID).transpose(2, 0, 1))


def _to_challenge_axes(array: np.ndarray) -> np.ndarray:
    """Inverse of the (k, j, i) <- (axis 2, axis 0, axis 1) mapping of :func:`_dense`."""
    return array.transpose(1, 2, 0)


def _read_voxel_dimensions(path: Path) -> np.ndarray:
    try:
        dims = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a list of three voxel sizes ({exc})") from None
    if dims.shape != (3,) or not np.all(np.isfinite(dims)) or np.any(dims <= 0):
        raise InputError(f"{path}: expected three positive voxel sizes in mm, got {dims.tolist()}")
    return dims


def is_challenge_grid(geometry: Geometry) -> bool:
    """Whether ``geometry`` is an OpenKBP patient grid, on which submission files are indexed."""
    return geometry.shape == GRID and np.allclose(geometry.direction, DIRECTION, atol=GEOMETRY_ATOL)


def _require_challenge_grid(geometry: Geometry, what: str) -> None:
    if not is_challenge_grid(geometry):
        raise InputError(
            f"{what} is not on an OpenKBP patient grid (128^3 voxels, direction diag(1, 1, -1)): "
            f"{geometry.describe()}; resample it onto the patient's CT grid first"
        )

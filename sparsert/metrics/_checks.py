"""Input checks shared by the metric functions: every failure is an InputError naming the array."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparsert.errors import InputError


def finite_array(values, what: str) -> np.ndarray:
    """``values`` as a float64 array; refuses non-numeric arrays and NaN or infinite values."""
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what} must be a numeric array, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    bad = np.count_nonzero(~np.isfinite(array))
    if bad:
        raise InputError(f"{what} contains {bad} NaN or infinite value(s)")
    return array


def binary_mask(mask, shape: tuple[int, ...], what: str, against: str = "the dose grid") -> np.ndarray:
    """``mask`` as a bool array of ``shape``; numeric masks must hold only 0 and 1."""
    array = np.asarray(mask)
    if array.shape != tuple(shape):
        raise InputError(f"{what} has shape {array.shape}, but {against} has shape {tuple(shape)}")
    if array.dtype == bool:
        return array
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{what} must be a boolean or 0/1 mask, got dtype {array.dtype}")
    # A label map or a dose passed by mistake must not be silently binarised.
    if not ((array == 0) | (array == 1)).all():
        raise InputError(f"{what} is not a binary mask: it holds values other than 0 and 1")
    return array != 0


def same_shape(array: np.ndarray, shape: tuple[int, ...], what: str, against: str) -> None:
    if array.shape != tuple(shape):
        raise InputError(f"{what} has shape {array.shape}, but {against} has shape {tuple(shape)}")


def positive(value: float, what: str) -> float:
    number = float(value)
    if not np.isfinite(number) or number <= 0:
        raise InputError(f"{what} must be a positive number, got {value}")
    return number


def spacing_for(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Voxel spacing in numpy axis order, one positive value per axis."""
    values = tuple(float(s) for s in np.ravel(spacing))
    if len(values) != ndim:
        raise InputError(f"spacing {tuple(values)} has {len(values)} values, but the masks have {ndim} axes")
    for s in values:
        positive(s, f"spacing {tuple(values)}: each value")
    return values

"""Cumulative dose-volume histograms (DVH) and their read-outs: Dx%, Vx, D_cc and mean dose.

Conventions, identical to the OpenKBP challenge evaluation (verified in the challenge's code,
repository ababier/open-kbp, file ``provided_code/dose_evaluation_class.py``,
``EvaluateDose.calculate_metrics``):

- A structure's dose is the list of dose values of its voxels: every voxel counts once with equal
  weight (no partial volumes, no interpolation between voxels).
- Dx% ("the dose received by at least x % of the volume") is
  ``numpy.percentile(roi_dose, 100 - x)`` with numpy's default *linear* interpolation: for sorted
  values ``v[0..n-1]`` and q = 100 - x, position ``p = q / 100 * (n - 1)``, result
  ``v[floor(p)] + (p - floor(p)) * (v[floor(p) + 1] - v[floor(p)])``. So D99 = percentile 1,
  D95 = percentile 5, D1 = percentile 99 (the challenge's ``np.percentile(roi_dose, 1 / 5 / 99)``).
- D_cc (dose to the hottest ``cc`` cubic centimetres) generalises the challenge's D_0.1cc rule:
  ``voxels = max(1, round(cc * 1000 / voxel_volume_mm3))`` (numpy rounding, halves to even, as
  ``np.round(100 / voxel_size)`` in the challenge), then
  ``numpy.percentile(roi_dose, 100 - voxels / roi_size * 100)``. For cc = 0.1 this is the
  challenge's formula exactly. Where the structure is smaller than ``voxels`` the challenge code
  would call numpy.percentile with a negative q and fail; here q is clipped to 0 (the minimum dose:
  the whole structure lies within the hottest ``cc``).
- Vx and the DVH curve count voxels with dose >= x (cumulative DVH, "at least x Gy").
"""

from __future__ import annotations

import numpy as np

from sparsert.errors import InputError
from sparsert.metrics._checks import binary_mask, finite_array, positive


def dvh_curve(dose, mask, bin_width_gy: float = 0.1, max_dose: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative DVH of one structure: (dose levels in Gy, % of the structure receiving >= each level).

    Levels are ``0, w, 2w, ...`` up to the first multiple of ``w`` at or above ``max_dose`` (default:
    the structure's maximum dose; give a common value to put several structures on one axis).
    """
    values = np.sort(_roi_dose(dose, mask))
    width = positive(bin_width_gy, "bin_width_gy")
    top = float(values[-1]) if max_dose is None else float(max_dose)
    # The small tolerance keeps 70 Gy / 0.1 Gy from producing a spurious extra level.
    n_levels = int(np.ceil(max(top, 0.0) / width - 1e-9)) + 1
    levels = np.arange(n_levels) * width
    percent = 100.0 * (values.size - np.searchsorted(values, levels, side="left")) / values.size
    return levels, percent


def dvh_curve_cc(
    dose, mask, voxel_volume_mm3: float, bin_width_gy: float = 0.1, max_dose: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative DVH in absolute volume: (dose levels in Gy, cc receiving >= each level)."""
    structure_cc = np.count_nonzero(_mask_for(dose, mask)) * positive(voxel_volume_mm3, "voxel_volume_mm3") / 1000.0
    levels, percent = dvh_curve(dose, mask, bin_width_gy, max_dose)
    return levels, percent / 100.0 * structure_cc


def dose_at_volume(dose, mask, percent: float) -> float:
    """Dx%: the dose received by at least ``percent`` % of the structure (numpy.percentile(d, 100 - x), linear)."""
    if not 0.0 <= float(percent) <= 100.0:
        raise InputError(f"volume percent must lie in 0..100, got {percent}")
    return percentile_dose(_roi_dose(dose, mask), float(percent))


def volume_at_dose(dose, mask, gy: float, voxel_volume_mm3: float | None = None, relative: bool = True) -> float:
    """Vx: the part of the structure receiving >= ``gy``; % of its volume, or cc when ``relative`` is False.

    ``voxel_volume_mm3`` is needed (and used) only for the absolute volume.
    """
    values = _roi_dose(dose, mask)
    count = np.count_nonzero(values >= float(gy))
    if relative:
        return 100.0 * count / values.size
    if voxel_volume_mm3 is None:
        raise InputError("volume_at_dose: voxel_volume_mm3 is required for an absolute volume (relative=False)")
    return count * positive(voxel_volume_mm3, "voxel_volume_mm3") / 1000.0


def d_cc(dose, mask, cc: float, voxel_volume_mm3: float) -> float:
    """Dose to the hottest ``cc`` cubic centimetres of the structure (OpenKBP's D_0.1cc rule for cc=0.1)."""
    return cc_dose(_roi_dose(dose, mask), positive(cc, "cc"), positive(voxel_volume_mm3, "voxel_volume_mm3"))


def mean_dose(dose, mask) -> float:
    """Mean dose over the structure's voxels."""
    return float(_roi_dose(dose, mask).mean())


def percentile_dose(roi_dose: np.ndarray, percent: float) -> float:
    """Dx% of an already extracted, non-empty 1D array of structure doses."""
    return float(np.percentile(roi_dose, 100.0 - percent))


def cc_dose(roi_dose: np.ndarray, cc: float, voxel_volume_mm3: float) -> float:
    """D_cc of an already extracted, non-empty 1D array of structure doses (see the module notes)."""
    voxels = max(1.0, float(np.round(cc * 1000.0 / voxel_volume_mm3)))
    q = max(0.0, 100.0 - voxels / roi_dose.size * 100.0)
    return float(np.percentile(roi_dose, q))


def _mask_for(dose, mask) -> np.ndarray:
    return binary_mask(mask, np.shape(dose), "structure mask")


def _roi_dose(dose, mask) -> np.ndarray:
    values = finite_array(dose, "dose")[_mask_for(dose, mask)]
    if values.size == 0:
        raise InputError("structure mask is empty: no dose-volume metric is defined for it")
    return values

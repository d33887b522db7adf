"""Plan metrics per structure: the rows of the dose scene's metrics table.

One row per structure and dose, in the spirit of SlicerRT's DVH metrics table (one row per
structure and dose volume): ``predicted``, then ``reference`` and ``difference`` (predicted minus
reference) when a reference dose is given. Definitions are those of :mod:`sparsert.metrics`:
Dx% is numpy's linear percentile, D0.1cc the OpenKBP rule, HI the ICRU 83 index (D2 - D98) / D50,
CI Paddick's (TV_PIV^2 / (TV x PIV)), V at prescription the % of the structure receiving at least
the prescription. Values that do not apply (HI of an organ, anything needing a prescription a
target lacks) are None.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.metrics import homogeneity_index, paddick_conformity_index
from sparsert.metrics.dvh import cc_dose, percentile_dose
from sparsert.roles import StructureRole

# (key, column title, unit) in table order; units go to the MRML table's column properties.
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("volume_cc", "Volume", "cc"),
    ("mean_gy", "Mean dose", "Gy"),
    ("min_gy", "Min dose", "Gy"),
    ("max_gy", "Max dose", "Gy"),
    ("d98_gy", "D98%", "Gy"),
    ("d95_gy", "D95%", "Gy"),
    ("d2_gy", "D2%", "Gy"),
    ("d0_1cc_gy", "D0.1cc", "Gy"),
    ("v_rx_percent", "V100%Rx", "%"),
    ("hi", "HI", ""),
    ("ci", "CI", ""),
)
PREDICTED, REFERENCE, DIFFERENCE = "predicted", "reference", "difference"


def structure_metrics(dose: np.ndarray, mask: np.ndarray, role: StructureRole, voxel_volume_mm3: float) -> dict:
    """The metrics of one non-empty structure under one dose (both on the same grid)."""
    roi = dose[mask]
    rx = role.prescription_gy if role.is_target else None
    return {
        "volume_cc": roi.size * voxel_volume_mm3 / 1000.0,
        "mean_gy": float(roi.mean()),
        "min_gy": float(roi.min()),
        "max_gy": float(roi.max()),
        "d98_gy": percentile_dose(roi, 98.0),
        "d95_gy": percentile_dose(roi, 95.0),
        "d2_gy": percentile_dose(roi, 2.0),
        "d0_1cc_gy": cc_dose(roi, 0.1, voxel_volume_mm3),
        "v_rx_percent": None if rx is None else 100.0 * np.count_nonzero(roi >= rx) / roi.size,
        "hi": _defined(homogeneity_index(dose, mask)) if role.is_target else None,
        "ci": None if rx is None else paddick_conformity_index(dose, mask, rx),
    }


def metrics_rows(
    structures: Segmentation,
    roles: Mapping[str, StructureRole],
    predicted: Volume,
    reference: Volume | None = None,
) -> list[dict]:
    """Rows ``{"structure", "role", "prescription_gy", "dose", <metric keys>}`` for every non-empty,
    non-background structure, in segmentation order.

    Both doses must be on the structures' grid (resample them first). ``dose`` is ``predicted``,
    ``reference`` or ``difference``; a difference row holds predicted minus reference for every
    dose metric and None for the volume (the structure is the same).
    """
    doses = {PREDICTED: predicted} if reference is None else {PREDICTED: predicted, REFERENCE: reference}
    arrays = {}
    for label, volume in doses.items():
        structures.require_grid(volume.geometry, f"structures (against the {label} dose)")
        arrays[label] = np.asarray(volume.array, dtype=np.float64)
        if not np.isfinite(arrays[label]).all():
            raise InputError(f"the {label} dose contains NaN or infinite values")
    voxel = structures.geometry.voxel_volume_mm3
    rows = []
    for segment in structures.segments:
        role = roles.get(segment.name)
        if role is None:
            raise InputError(f"structure '{segment.name}' has no role")
        if role.is_background or not segment.mask.any():
            continue
        head = {"structure": segment.name, "role": role.role, "prescription_gy": role.prescription_gy}
        values = {label: structure_metrics(array, segment.mask, role, voxel) for label, array in arrays.items()}
        rows.extend({**head, "dose": label, **metrics} for label, metrics in values.items())
        if reference is not None:
            rows.append({**head, "dose": DIFFERENCE, **_difference(values[PREDICTED], values[REFERENCE])})
    return rows


def _difference(predicted: dict, reference: dict) -> dict:
    out = {}
    for key, _, _ in METRIC_COLUMNS:
        p, r = predicted[key], reference[key]
        out[key] = None if key == "volume_cc" or p is None or r is None else p - r
    return out


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)

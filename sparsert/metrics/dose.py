"""Dose-prediction metrics: the OpenKBP challenge scores and plan-quality indices.

OpenKBP scores, as computed by the challenge's own evaluation (verified in repository
ababier/open-kbp, ``provided_code/dose_evaluation_class.py``, ``EvaluateDose.make_metrics`` and
``calculate_metrics``; prediction masking in ``provided_code/network_functions.py``,
``PredictionModel.predict_dose``):

- Dose error of one patient: ``sum(|reference - predicted|)`` over the *whole* grid divided by the
  number of possible-dose voxels. The evaluation does not mask the prediction; the challenge's
  prediction step multiplies its output by the possible-dose mask before saving it, so submitted
  doses are zero outside the mask. ``mask_prediction=True`` reproduces that step here (use it for
  raw network outputs); the default scores the prediction exactly as given. The reference dose is
  zero outside the mask in the OpenKBP data.
- Dose score: mean of the per-patient dose errors.
- DVH metrics, on the *reference* structure masks for both doses: organs (Brainstem, SpinalCord,
  RightParotid, LeftParotid, Esophagus, Larynx, Mandible) D_0.1_cc and mean; targets (PTV56,
  PTV63, PTV70) D_99, D_95, D_1 (conventions in :mod:`sparsert.metrics.dvh`). A structure that is
  missing or empty has no metrics (NaN in the challenge's table).
- DVH score: ``nanmean`` of ``|reference metric - predicted metric|`` over the flattened
  patient x metric table, so missing structures are skipped and every existing metric of every
  patient weighs the same (it is not the mean of per-patient DVH errors).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from sparsert.errors import InputError
from sparsert.metrics._checks import binary_mask, finite_array, positive, same_shape
from sparsert.metrics.dvh import cc_dose, percentile_dose

OPENKBP_ORGANS = ("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible")
OPENKBP_TARGETS = ("PTV56", "PTV63", "PTV70")
ORGAN_METRICS = ("D_0.1_cc", "mean")
TARGET_METRICS = ("D_99", "D_95", "D_1")
# Metric table columns in the challenge's order (metric-major, as itertools.product builds them).
OPENKBP_METRIC_KEYS: tuple[tuple[str, str], ...] = tuple(
    [(m, roi) for m in ORGAN_METRICS for roi in OPENKBP_ORGANS]
    + [(m, roi) for m in TARGET_METRICS for roi in OPENKBP_TARGETS]
)
_TARGET_PERCENT = {"D_99": 99.0, "D_95": 95.0, "D_1": 1.0}
_PTV_NAME = re.compile(r"^ptv[ _-]?(\d+(?:\.\d+)?)$", re.IGNORECASE)


@dataclass(frozen=True)
class DoseCase:
    """One patient to score: what a CLI reads from a case folder and a prediction file.

    All arrays share one grid (numpy [k, j, i] order). ``structures`` maps structure names (the
    OpenKBP names above; other names are ignored by the OpenKBP scores) to bool or 0/1 masks drawn
    on the reference plan; ``voxel_volume_mm3`` is the product of the voxel spacing
    (``Geometry.voxel_volume_mm3``).
    """

    case_id: str
    reference: np.ndarray
    predicted: np.ndarray
    possible_dose_mask: np.ndarray
    structures: Mapping[str, np.ndarray]
    voxel_volume_mm3: float


def openkbp_dose_error(reference, predicted, possible_dose_mask, *, mask_prediction: bool = False) -> float:
    """One patient's OpenKBP dose error: sum|reference - predicted| / number of possible-dose voxels.

    The sum runs over the whole grid, as in the challenge; ``mask_prediction`` first zeroes the
    prediction outside the possible-dose mask.
    """
    ref = finite_array(reference, "reference dose")
    pred = finite_array(predicted, "predicted dose")
    same_shape(pred, ref.shape, "predicted dose", "the reference dose")
    mask = binary_mask(possible_dose_mask, ref.shape, "possible-dose mask", "the reference dose")
    return _dose_error(ref, pred * mask if mask_prediction else pred, mask, "possible-dose mask")


def openkbp_dvh_metrics(
    dose, structures: Mapping[str, np.ndarray], voxel_volume_mm3: float
) -> dict[tuple[str, str], float]:
    """The challenge's DVH metrics of one dose: {(metric, roi): Gy} for all 23 columns, NaN where absent."""
    values = finite_array(dose, "dose")
    masks = _structure_masks(structures, values.shape, "")
    return _dvh_metrics(values, masks, positive(voxel_volume_mm3, "voxel_volume_mm3"))


def openkbp_scores(cases: Iterable[DoseCase], *, mask_prediction: bool = False) -> dict:
    """OpenKBP dose and DVH scores over ``cases``, with per-patient detail, ready for ``json.dump``.

    Returns ``{"dose_score", "dvh_score", "n_cases", "prediction_masked", "cases": [{"case_id",
    "dose_error", "dvh_error", "dvh_metrics": [{"metric", "roi", "reference", "predicted",
    "abs_error"}, ...]}, ...]}``; metrics of missing structures are None (never NaN, which JSON
    lacks). ``dvh_error`` is one patient's mean over its existing metrics, for display; the
    ``dvh_score`` pools all patients' metrics as the challenge does. ``dvh_score`` is None when no
    case has any OpenKBP structure. ``mask_prediction`` zeroes each prediction outside its
    possible-dose mask before every metric (the challenge's prediction step, see the module notes).
    ``cases`` may be a generator: each case is used once, so a CLI can read one case at a time.
    """
    dose_errors: list[float] = []
    differences: list[float] = []
    details = []
    for case in cases:
        where = f"case {case.case_id}"
        if any(d["case_id"] == str(case.case_id) for d in details):
            raise InputError(f"{where} appears twice: case ids must be unique")
        ref = finite_array(case.reference, f"{where}: reference dose")
        pred = finite_array(case.predicted, f"{where}: predicted dose")
        same_shape(pred, ref.shape, f"{where}: predicted dose", "the reference dose")
        possible = binary_mask(case.possible_dose_mask, ref.shape, f"{where}: possible-dose mask", "the reference dose")
        masks = _structure_masks(case.structures, ref.shape, f"{where}: ")
        voxel = positive(case.voxel_volume_mm3, f"{where}: voxel_volume_mm3")
        if mask_prediction:
            pred = pred * possible
        error = _dose_error(ref, pred, possible, f"{where}: possible-dose mask")
        ref_metrics = _dvh_metrics(ref, masks, voxel)
        pred_metrics = _dvh_metrics(pred, masks, voxel)
        rows = [comparison_row(m, roi, ref_metrics[(m, roi)], pred_metrics[(m, roi)]) for m, roi in OPENKBP_METRIC_KEYS]
        present = [k for k in OPENKBP_METRIC_KEYS if not math.isnan(ref_metrics[k])]
        case_diffs = [abs(ref_metrics[k] - pred_metrics[k]) for k in present]
        dose_errors.append(error)
        differences.extend(case_diffs)
        details.append(
            {
                "case_id": str(case.case_id),
                "dose_error": error,
                "dvh_error": float(np.mean(case_diffs)) if case_diffs else None,
                "dvh_metrics": rows,
            }
        )
    if not details:
        raise InputError("no cases to score")
    return {
        "dose_score": float(np.mean(dose_errors)),
        "dvh_score": float(np.mean(differences)) if differences else None,
        "n_cases": len(details),
        "prediction_masked": mask_prediction,
        "cases": details,
    }


def target_prescriptions(names: Iterable[str], overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Prescription dose (Gy) of each target among ``names``.

    By default a structure named ``PTV<number>`` (also ``PTV_<number>``, ``PTV-<number>``,
    ``ptv <number>``, case-insensitive) is a target prescribed ``<number>`` Gy. ``overrides``
    ({name: Gy}) replaces or adds prescriptions (e.g. ``{"CTV_high": 70}``); its names must be
    among ``names``.
    """
    names = list(names)
    prescriptions = {}
    for name in names:
        match = _PTV_NAME.match(name.strip())
        if match:
            prescriptions[name] = float(match.group(1))
    for name, gy in (overrides or {}).items():
        if name not in names:
            known = ", ".join(names) or "none"
            raise InputError(f"prescription given for '{name}', which is not among the structures ({known})")
        prescriptions[name] = positive(gy, f"prescription of '{name}'")
    return prescriptions


def homogeneity_index(dose, target_mask) -> float:
    """ICRU 83 homogeneity index (D2 - D98) / D50 of the target (Dx% as in :mod:`sparsert.metrics.dvh`).

    NaN when D50 is 0 (the target receives no dose: the index is undefined).
    """
    values = finite_array(dose, "dose")
    mask = binary_mask(target_mask, values.shape, "target mask")
    if not mask.any():
        raise InputError("target mask is empty: the homogeneity index is not defined")
    return _homogeneity(values[mask])


def paddick_conformity_index(dose, target_mask, prescription_gy: float) -> float:
    """Paddick conformity index TV_PIV^2 / (TV x PIV); 1 is perfect conformity.

    TV: target volume; PIV: volume of the whole dose grid receiving >= the prescription;
    TV_PIV: the part of the target inside it. Voxel counts are used: the voxel volume cancels
    out of the ratio. 0 when no voxel reaches the prescription.
    """
    values = finite_array(dose, "dose")
    mask = binary_mask(target_mask, values.shape, "target mask")
    if not mask.any():
        raise InputError("target mask is empty: the conformity index is not defined")
    return _paddick(values, mask, positive(prescription_gy, "prescription_gy"))


def target_coverage_d95(
    dose, structures: Mapping[str, np.ndarray], prescriptions: Mapping[str, float] | None = None
) -> float:
    """D95 (Gy) of the highest-prescription non-empty target (see :func:`target_prescriptions`)."""
    values = finite_array(dose, "dose")
    masks = _structure_masks(structures, values.shape, "")
    name = _highest_target(_prescribed(structures, masks, prescriptions))
    return percentile_dose(values[masks[name]], 95.0)


def plan_quality_errors(
    reference,
    predicted,
    structures: Mapping[str, np.ndarray],
    voxel_volume_mm3: float,
    prescriptions: Mapping[str, float] | None = None,
) -> list[dict]:
    """Plan-quality indices of a predicted and a reference dose and their absolute differences.

    Rows (``{"metric", "roi", "reference", "predicted", "abs_error"}``, JSON-ready, None for
    undefined values): ``HI`` and ``Paddick_CI`` of every non-empty target (at its own
    prescription; in nested head-and-neck plans the lower-dose PTVs' prescription isodose also
    covers the higher-dose PTVs, so their CI is low by construction), ``D_95`` of the
    highest-prescription target, then ``mean`` and ``D_0.1_cc`` of every non-empty structure.
    """
    ref = finite_array(reference, "reference dose")
    pred = finite_array(predicted, "predicted dose")
    same_shape(pred, ref.shape, "predicted dose", "the reference dose")
    masks = _structure_masks(structures, ref.shape, "")
    voxel = positive(voxel_volume_mm3, "voxel_volume_mm3")
    rx = _prescribed(structures, masks, prescriptions)
    rows = []
    for name, gy in rx.items():
        rows.append(comparison_row("HI", name, _homogeneity(ref[masks[name]]), _homogeneity(pred[masks[name]])))
        rows.append(comparison_row("Paddick_CI", name, _paddick(ref, masks[name], gy), _paddick(pred, masks[name], gy)))
    if rx:
        top = _highest_target(rx)
        ref_d95, pred_d95 = percentile_dose(ref[masks[top]], 95.0), percentile_dose(pred[masks[top]], 95.0)
        rows.append(comparison_row("D_95", top, ref_d95, pred_d95))
    for name, mask in masks.items():
        r, p = ref[mask], pred[mask]
        rows.append(comparison_row("mean", name, float(r.mean()), float(p.mean())))
        rows.append(comparison_row("D_0.1_cc", name, cc_dose(r, 0.1, voxel), cc_dose(p, 0.1, voxel)))
    return rows


def comparison_row(metric: str, roi: str, reference: float, predicted: float) -> dict:
    """One JSON-ready comparison: NaN (undefined) values become None."""
    error = abs(reference - predicted)
    return {
        "metric": metric,
        "roi": roi,
        "reference": None if math.isnan(reference) else float(reference),
        "predicted": None if math.isnan(predicted) else float(predicted),
        "abs_error": None if math.isnan(error) else float(error),
    }


def _dose_error(ref: np.ndarray, pred: np.ndarray, possible: np.ndarray, what: str) -> float:
    n = np.count_nonzero(possible)
    if n == 0:
        raise InputError(f"{what} is empty: the dose error is not defined")
    return float(np.abs(ref - pred).sum() / n)


def _structure_masks(structures: Mapping[str, np.ndarray], shape: tuple[int, ...], where: str) -> dict[str, np.ndarray]:
    """The non-empty structures as bool masks (empty ones count as missing)."""
    masks = {}
    for name, mask in structures.items():
        array = binary_mask(mask, shape, f"{where}structure '{name}'", "the dose")
        if array.any():
            masks[name] = array
    return masks


def _dvh_metrics(
    dose: np.ndarray, masks: Mapping[str, np.ndarray], voxel_volume_mm3: float
) -> dict[tuple[str, str], float]:
    metrics = dict.fromkeys(OPENKBP_METRIC_KEYS, math.nan)
    for roi in OPENKBP_ORGANS:
        if roi in masks:
            roi_dose = dose[masks[roi]]
            metrics[("D_0.1_cc", roi)] = cc_dose(roi_dose, 0.1, voxel_volume_mm3)
            metrics[("mean", roi)] = float(roi_dose.mean())
    for roi in OPENKBP_TARGETS:
        if roi in masks:
            roi_dose = dose[masks[roi]]
            for metric, percent in _TARGET_PERCENT.items():
                metrics[(metric, roi)] = percentile_dose(roi_dose, percent)
    return metrics


def _homogeneity(roi_dose: np.ndarray) -> float:
    d50 = percentile_dose(roi_dose, 50.0)
    if d50 == 0:
        return math.nan
    return (percentile_dose(roi_dose, 2.0) - percentile_dose(roi_dose, 98.0)) / d50


def _paddick(dose: np.ndarray, target: np.ndarray, prescription_gy: float) -> float:
    covered = dose >= prescription_gy
    piv = np.count_nonzero(covered)
    if piv == 0:
        return 0.0
    tv_piv = np.count_nonzero(covered & target)
    return tv_piv**2 / (np.count_nonzero(target) * piv)


def _prescribed(
    structures: Mapping, masks: Mapping[str, np.ndarray], prescriptions: Mapping[str, float] | None
) -> dict[str, float]:
    """Prescriptions of the non-empty targets (overrides are checked against all given names)."""
    return {name: gy for name, gy in target_prescriptions(structures, prescriptions).items() if name in masks}


def _highest_target(prescribed: Mapping[str, float]) -> str:
    if not prescribed:
        raise InputError(
            "no non-empty target with a prescription among the structures: name targets PTV<Gy> or give prescriptions"
        )
    return max(prescribed, key=prescribed.get)

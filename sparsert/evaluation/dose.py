"""Scoring predicted doses against reference plans (OpenKBP scores and plan-quality errors).

References come from a data set (any supported format) or a single dose file; predictions from a
folder holding, per case, a challenge submission file (``pt_N.csv``), an image named after the case
(``pt_N.nrrd``, ``pt_N.nii.gz``...) or a case folder with a ``dose`` image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from sparsert.data.case import Case
from sparsert.data.datasets import Dataset
from sparsert.data.openkbp_csv import read_openkbp_prediction
from sparsert.errors import InputError
from sparsert.io.dose_io import read_dose
from sparsert.io.segmentation_io import IMAGE_SUFFIXES, read_structures
from sparsert.io.volume import Geometry, Volume, read_image, resample
from sparsert.metrics.dose import DoseCase, openkbp_scores, plan_quality_errors

PREDICTION_HINT = "pt_N.csv, <case>.nrrd / .nii.gz, or <case>/dose.<ext>"


def find_prediction(folder: Path, case_id: str) -> Path | None:
    """The prediction file of ``case_id`` in ``folder``, or None."""
    stem = case_id.split("/")[-1]
    candidates = [folder / f"{stem}.csv"] + [folder / f"{stem}{s}" for s in IMAGE_SUFFIXES]
    candidates += [folder / stem / f"dose{s}" for s in IMAGE_SUFFIXES]
    return next((p for p in candidates if p.is_file()), None)


def read_prediction(path: Path, reference: Geometry) -> Volume:
    """A predicted dose on the reference grid (challenge CSVs are indexed on it by definition)."""
    if path.suffix == ".csv":
        return read_openkbp_prediction(path, reference)
    dose = read_dose(path)
    if not dose.geometry.matches(reference):
        raise InputError(f"{path}: predicted dose grid ({dose.geometry.describe()}) differs from the reference ({reference.describe()})")
    return dose


def _dose_case(case_id: str, reference: Volume, predicted: Volume, possible: np.ndarray, structures: Mapping[str, np.ndarray]) -> DoseCase:
    return DoseCase(case_id, reference.array.astype(np.float32), predicted.array.astype(np.float32), possible, structures,
                    reference.geometry.voxel_volume_mm3)


def dataset_dose_cases(reference: Dataset, predicted: Path, on_case: Callable[[str], None] | None = None) -> Iterator[DoseCase]:
    """Reference cases paired with their predictions, read one at a time."""
    ids = reference.case_ids()
    missing = [c for c in ids if find_prediction(predicted, c) is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"{predicted}: no prediction for {len(missing)} of {len(ids)} cases ({shown}); expected {PREDICTION_HINT}")
    for case_id in ids:
        case = reference.load(case_id)
        yield _case_from(case, read_prediction(find_prediction(predicted, case_id), case.geometry))
        if on_case:
            on_case(case_id)


def _case_from(case: Case, predicted: Volume) -> DoseCase:
    if case.dose is None:
        raise InputError(f"case {case.case_id}: the reference holds no dose")
    possible = case.possible_dose_mask.array > 0 if case.possible_dose_mask is not None else _default_possible(case.dose, predicted)
    structures = case.structures.masks() if case.structures is not None else {}
    return _dose_case(case.case_id, case.dose, predicted, possible, structures)


def _default_possible(reference: Volume, predicted: Volume) -> np.ndarray:
    # Without a possible-dose mask, score where either dose is deposited (OpenKBP doses are zero outside it).
    return (reference.array > 0) | (predicted.array > 0)


def file_dose_case(reference: Path, predicted: Path, structures: Path, possible_dose_mask: Path | None = None) -> DoseCase:
    """One reference/predicted dose file pair (images or RTDOSE) with the reference structures
    (any structure format, or an RTSTRUCT rasterised on the reference dose grid)."""
    ref = read_dose(reference)
    pred = read_prediction(predicted, ref.geometry)
    seg = read_structures(structures, ref.geometry)
    if possible_dose_mask is not None:
        possible = resample(read_image(possible_dose_mask), ref.geometry, label=True).array > 0
    else:
        possible = _default_possible(ref, pred)
    return _dose_case(Path(reference).name, ref, pred, possible, seg.masks())


def evaluate_dose(cases: Iterator[DoseCase], mask_prediction: bool = False, prescriptions: Mapping[str, float] | None = None) -> dict:
    """OpenKBP scores plus per-case plan-quality errors (HI, Paddick CI, D95, mean, D0.1cc)."""
    quality: dict[str, list[dict]] = {}

    def with_quality(items: Iterator[DoseCase]) -> Iterator[DoseCase]:
        for c in items:
            pred = c.predicted * c.possible_dose_mask if mask_prediction else c.predicted
            quality[c.case_id] = plan_quality_errors(c.reference, pred, c.structures, c.voxel_volume_mm3, prescriptions)
            yield c

    result = openkbp_scores(with_quality(cases), mask_prediction=mask_prediction)
    for detail in result["cases"]:
        detail["plan_quality"] = quality[detail["case_id"]]
    result["plan_quality_mean_abs_error"] = _mean_errors(quality)
    return result


def _mean_errors(quality: dict[str, list[dict]]) -> dict[str, float]:
    """Mean absolute error of each plan-quality metric over cases and structures (targets for HI/CI/D95)."""
    pooled: dict[str, list[float]] = {}
    for rows in quality.values():
        for row in rows:
            if row["abs_error"] is not None:
                pooled.setdefault(row["metric"], []).append(row["abs_error"])
    return {metric: float(np.mean(values)) for metric, values in pooled.items()}

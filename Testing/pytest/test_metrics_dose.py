"""OpenKBP scores and plan-quality indices: hand-computed cases and one real validation patient."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sparsert.errors import InputError
from sparsert.io.volume import read_image
from sparsert.metrics import (
    OPENKBP_METRIC_KEYS,
    DoseCase,
    homogeneity_index,
    openkbp_dose_error,
    openkbp_dvh_metrics,
    openkbp_scores,
    paddick_conformity_index,
    plan_quality_errors,
    target_coverage_d95,
    target_prescriptions,
)

# --- hand-computed cases -------------------------------------------------------------------------


def test_dose_error_sums_whole_grid_over_possible_voxels() -> None:
    ref = np.zeros((2, 2, 2))
    ref[0] = [[10.0, 20.0], [30.0, 40.0]]
    possible = np.zeros((2, 2, 2), dtype=np.uint8)
    possible[0] = 1
    pred = ref.copy()
    pred[0, 0, 0] += 2.0  # inside: |diff| 2
    pred[0, 1, 1] -= 4.0  # inside: |diff| 4
    pred[1, 0, 0] = 6.0  # outside the possible-dose mask
    # Challenge rule: (2 + 4 + 6) / 4 possible voxels = 3; with the prediction masked: (2 + 4) / 4 = 1.5
    assert openkbp_dose_error(ref, pred, possible) == pytest.approx(3.0)
    assert openkbp_dose_error(ref, pred, possible, mask_prediction=True) == pytest.approx(1.5)
    with pytest.raises(InputError, match="possible-dose mask is empty"):
        openkbp_dose_error(ref, pred, np.zeros_like(possible))


def _tiny_case(case_id: str, shift: float, structure: str) -> DoseCase:
    """A 20-voxel grid: ``structure`` holds doses 10..100 (10 voxels); the prediction is shifted."""
    ref = np.zeros((2, 10, 1))
    ref[0, :, 0] = np.arange(10, 101, 10)
    ref[1, :, 0] = 5.0
    mask = np.zeros(ref.shape, dtype=bool)
    mask[0] = True
    empty = np.zeros(ref.shape, dtype=bool)
    return DoseCase(case_id, ref, ref + shift, np.ones(ref.shape, dtype=bool), {structure: mask, "Larynx": empty}, 30.0)


def test_dvh_metrics_by_hand() -> None:
    case = _tiny_case("a", 0.0, "Brainstem")
    metrics = openkbp_dvh_metrics(case.reference, case.structures, 30.0)
    assert list(metrics) == list(OPENKBP_METRIC_KEYS) and len(metrics) == 23
    # 30 mm3 voxels -> 3 voxels in 0.1 cc; q = 70; p = 0.7 * 9 = 6.3 -> 70 + 0.3 * 10 = 73
    assert metrics[("D_0.1_cc", "Brainstem")] == pytest.approx(73.0)
    assert metrics[("mean", "Brainstem")] == pytest.approx(55.0)
    # Empty (Larynx) and missing structures have no metrics.
    assert math.isnan(metrics[("mean", "Larynx")]) and math.isnan(metrics[("D_95", "PTV70")])
    targets = openkbp_dvh_metrics(case.reference, {"PTV70": case.structures["Brainstem"]}, 30.0)
    # percentiles 1, 5, 99 of 10..100: p = 0.09, 0.45, 8.91 -> 10.9, 14.5, 99.1
    assert targets[("D_99", "PTV70")] == pytest.approx(10.9)
    assert targets[("D_95", "PTV70")] == pytest.approx(14.5)
    assert targets[("D_1", "PTV70")] == pytest.approx(99.1)


def test_scores_pool_metrics_over_patients() -> None:
    cases = [_tiny_case("organ", 3.0, "Brainstem"), _tiny_case("target", 1.0, "PTV70")]
    result = openkbp_scores(cases)
    # Dose errors: 3 * 20 / 20 = 3 and 1; dose score = 2.
    assert [c["dose_error"] for c in result["cases"]] == pytest.approx([3.0, 1.0])
    assert result["dose_score"] == pytest.approx(2.0)
    # DVH: |errors| 3, 3 (D_0.1_cc, mean) and 1, 1, 1 (D_99, D_95, D_1); pooled nanmean 9/5 = 1.8,
    # not the mean of the per-patient errors (3 + 1) / 2 = 2.
    assert result["dvh_score"] == pytest.approx(1.8)
    assert [c["dvh_error"] for c in result["cases"]] == pytest.approx([3.0, 1.0])
    row = next(r for r in result["cases"][0]["dvh_metrics"] if r["metric"] == "mean" and r["roi"] == "Brainstem")
    assert row == {"metric": "mean", "roi": "Brainstem", "reference": 55.0, "predicted": 58.0, "abs_error": 3.0}
    missing = next(r for r in result["cases"][0]["dvh_metrics"] if r["roi"] == "Larynx")
    assert missing["reference"] is None and missing["abs_error"] is None
    json.dumps(result, allow_nan=False)


def test_scores_refuse_bad_input() -> None:
    case = _tiny_case("x", 0.0, "PTV70")
    with pytest.raises(InputError, match="no cases"):
        openkbp_scores([])
    with pytest.raises(InputError, match="case x appears twice"):
        openkbp_scores(iter([case, case]))
    pred = case.predicted.copy()
    pred[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="case x: predicted dose contains 1 NaN"):
        openkbp_scores([DoseCase("x", case.reference, pred, case.possible_dose_mask, case.structures, 30.0)])
    with pytest.raises(InputError, match=r"case x: predicted dose has shape \(2, 10\)"):
        openkbp_scores([DoseCase("x", case.reference, case.predicted[..., 0], case.possible_dose_mask, case.structures, 30.0)])
    labels = {"PTV70": case.structures["PTV70"] * 3}
    with pytest.raises(InputError, match="case x: structure 'PTV70' is not a binary mask"):
        openkbp_scores([DoseCase("x", case.reference, case.predicted, case.possible_dose_mask, labels, 30.0)])


def test_homogeneity_index_by_hand() -> None:
    dose = np.zeros((2, 10, 1))
    dose[0, :, 0] = np.arange(60, 70)
    target = dose > 0
    # D2 = percentile 98: p = 8.82 -> 68.82; D98 = percentile 2: p = 0.18 -> 60.18; D50: p = 4.5 -> 64.5
    assert homogeneity_index(dose, target) == pytest.approx((68.82 - 60.18) / 64.5)
    assert math.isnan(homogeneity_index(np.zeros_like(dose), target))


def test_paddick_conformity_index_by_hand() -> None:
    target = np.zeros((10, 10, 10), dtype=bool)
    target[2:6, 2:6, 2:6] = True  # TV = 64
    dose = np.full(target.shape, 30.0)
    dose[2:7, 2:6, 2:6] = 60.0  # PIV = 80, all of the target covered
    assert paddick_conformity_index(dose, target, 60.0) == pytest.approx(64**2 / (64 * 80))
    dose = np.full(target.shape, 30.0)
    dose[3:7, 2:6, 2:6] = 61.0  # PIV = 64, TV_PIV = 48
    assert paddick_conformity_index(dose, target, 60.0) == pytest.approx(48**2 / (64 * 64))
    assert paddick_conformity_index(dose, target, 70.0) == 0.0
    with pytest.raises(InputError, match="target mask is empty"):
        paddick_conformity_index(dose, np.zeros_like(target), 60.0)


def test_prescriptions_from_names_and_overrides() -> None:
    names = ["PTV70", "ptv_56", "PTV-63.5", "CTV", "Brainstem", "PTV70_eval"]
    assert target_prescriptions(names) == {"PTV70": 70.0, "ptv_56": 56.0, "PTV-63.5": 63.5}
    assert target_prescriptions(names, {"CTV": 66, "PTV70": 69.96}) == {
        "PTV70": 69.96, "ptv_56": 56.0, "PTV-63.5": 63.5, "CTV": 66.0,
    }
    with pytest.raises(InputError, match="'GTV', which is not among the structures"):
        target_prescriptions(names, {"GTV": 70})


def test_plan_quality_errors_by_hand() -> None:
    ref = np.zeros((2, 10, 1))
    ref[0, :, 0] = np.arange(60, 70)  # PTV60
    ref[1, :, 0] = np.arange(0, 10)  # Brainstem
    structures = {"PTV60": np.zeros(ref.shape, bool), "Brainstem": np.zeros(ref.shape, bool), "PTV50": np.zeros(ref.shape, bool)}
    structures["PTV60"][0] = True
    structures["Brainstem"][1] = True
    # Highest-prescription target: PTV60, D95 = percentile 5 of 60..69 -> 60.45
    assert target_coverage_d95(ref, structures) == pytest.approx(60.45)
    rows = plan_quality_errors(ref, ref + 2.0, structures, 30.0)
    table = {(r["metric"], r["roi"]): r for r in rows}
    # The empty PTV50 gets no rows.
    assert sorted(table) == sorted(
        [("HI", "PTV60"), ("Paddick_CI", "PTV60"), ("D_95", "PTV60"), ("mean", "PTV60"), ("D_0.1_cc", "PTV60"),
         ("mean", "Brainstem"), ("D_0.1_cc", "Brainstem")]
    )
    assert table[("HI", "PTV60")]["reference"] == pytest.approx(8.64 / 64.5)
    assert table[("HI", "PTV60")]["predicted"] == pytest.approx(8.64 / 66.5)
    # Only the target reaches 60 Gy in both doses: CI 1 and 1.
    assert table[("Paddick_CI", "PTV60")]["abs_error"] == 0.0
    assert table[("D_95", "PTV60")]["predicted"] == pytest.approx(62.45)
    # D_0.1cc with 3 voxels: p = 6.3 -> 6.3 for 0..9 and 66.3 for 60..69
    assert table[("D_0.1_cc", "Brainstem")]["reference"] == pytest.approx(6.3)
    assert table[("D_0.1_cc", "PTV60")]["reference"] == pytest.approx(66.3)
    for key in [("D_95", "PTV60"), ("mean", "PTV60"), ("D_0.1_cc", "PTV60"), ("mean", "Brainstem"), ("D_0.1_cc", "Brainstem")]:
        assert table[key]["abs_error"] == pytest.approx(2.0)
    with pytest.raises(InputError, match="no non-empty target"):
        target_coverage_d95(ref, {"Brainstem": structures["Brainstem"]})


# --- one real OpenKBP validation patient ---------------------------------------------------------


@pytest.fixture(scope="module")
def pt201(openkbp_nifti):
    folder = openkbp_nifti / "validation" / "pt_201"
    dose = read_image(folder / "dose.nii.gz")
    possible = read_image(folder / "possible_dose_mask.nii.gz").array.astype(bool)
    structures = {p.name.split(".")[0]: read_image(p).array.astype(bool) for p in sorted((folder / "structures").glob("*.nii.gz"))}
    return dose.array.astype(np.float64), possible, structures, dose.geometry.voxel_volume_mm3


def _case(pt201, predicted) -> DoseCase:
    ref, possible, structures, voxel = pt201
    return DoseCase("pt_201", ref, predicted, possible, structures, voxel)


def test_real_case_identity_scores_zero(pt201) -> None:
    ref = pt201[0]
    assert np.all(ref[~pt201[1]] == 0)  # the data's own promise, relied on below
    result = openkbp_scores([_case(pt201, ref.copy())])
    assert result["dose_score"] == 0.0 and result["dvh_score"] == 0.0
    # pt_201 has all ten structures: 7 organs x 2 + 3 targets x 3 metrics
    assert sum(r["abs_error"] is not None for r in result["cases"][0]["dvh_metrics"]) == 23
    assert all(r["abs_error"] == 0.0 for r in plan_quality_errors(ref, ref, pt201[2], pt201[3]))


def test_real_case_one_gray_everywhere(pt201) -> None:
    ref, possible, _, _ = pt201
    # +1 Gy on the whole grid shifts every voxel, so every percentile and mean shifts by exactly 1.
    unmasked = openkbp_scores([_case(pt201, ref + 1.0)])
    assert unmasked["dvh_score"] == pytest.approx(1.0, abs=1e-9)
    # The challenge sums over the whole grid: 128^3 voxels of error 1 over the possible-dose voxels.
    assert unmasked["dose_score"] == pytest.approx(ref.size / possible.sum(), rel=1e-12)
    # Masking the prediction (the challenge's prediction step) leaves +1 only inside the mask.
    masked = openkbp_scores([_case(pt201, ref + 1.0)], mask_prediction=True)
    assert masked["dose_score"] == pytest.approx(1.0, abs=1e-9)


def test_real_case_one_gray_inside_possible_dose_mask(pt201) -> None:
    ref, possible, structures, _ = pt201
    result = openkbp_scores([_case(pt201, ref + possible)])
    assert result["dose_score"] == pytest.approx(1.0, abs=1e-9)
    # Esophagus and SpinalCord reach outside the possible-dose mask in pt_201, so their mean dose
    # shifts by (voxels inside / voxels) only; every other metric shifts by 1 (their hottest two
    # voxels, which D_0.1cc interpolates between with 1 voxel per 0.1 cc here, lie inside the mask).
    expected = []
    for row in result["cases"][0]["dvh_metrics"]:
        mask = structures[row["roi"]]
        if row["metric"] == "mean":
            expected.append(possible[mask].sum() / mask.sum())
        else:
            if row["metric"] == "D_0.1_cc":
                assert possible[mask][np.argsort(ref[mask])[-2:]].all()
            expected.append(1.0)
        assert row["abs_error"] == pytest.approx(expected[-1], abs=1e-9)
    assert sum(e < 1 for e in expected) == 2
    assert result["dvh_score"] == pytest.approx(np.mean(expected), abs=1e-9)


def test_real_case_two_gray_in_one_structure(pt201) -> None:
    ref, possible, structures, _ = pt201
    brainstem = structures["Brainstem"]
    others = np.any([m for name, m in structures.items() if name != "Brainstem"], axis=0)
    # Every pt_201 structure touches another (Brainstem shares 4 voxels with SpinalCord): shift
    # only the Brainstem voxels that belong to no other structure.
    own = brainstem & ~others
    assert possible[own].all() and 0 < brainstem.sum() - own.sum() <= 4
    result = openkbp_scores([_case(pt201, ref + 2.0 * own)])
    assert result["dose_score"] == pytest.approx(2.0 * own.sum() / possible.sum(), rel=1e-12)
    # Brainstem's two hottest voxels (1 voxel per 0.1 cc here) are its own, so D_0.1cc rises by 2;
    # its mean rises by 2 * own / all voxels; the other 21 metrics do not move.
    assert own[brainstem][np.argsort(ref[brainstem])[-2:]].all()
    changed = {(r["metric"], r["roi"]): r["abs_error"] for r in result["cases"][0]["dvh_metrics"] if r["abs_error"]}
    assert changed == pytest.approx({("D_0.1_cc", "Brainstem"): 2.0, ("mean", "Brainstem"): 2.0 * own.sum() / brainstem.sum()})
    assert result["dvh_score"] == pytest.approx((2.0 + 2.0 * own.sum() / brainstem.sum()) / 23, abs=1e-12)

"""ScribbleDose's whole pipeline on one case: scribbles -> structures -> dose -> DVH and metrics.

Used by ``sparsert demo``. Each step writes its
outputs as soon as it is done, so a step that cannot run (a model not available yet) leaves the
earlier results in place and stops with a message naming what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sparsert.io.segmentation import Segmentation
from sparsert.io.dose_io import write_dose
from sparsert.io.json_io import write_csv, write_json
from sparsert.io.segmentation_io import write_segmentation
from sparsert.io.volume import Volume
from sparsert.metrics.dose import DoseCase, openkbp_scores
from sparsert.metrics.segmentation import average_surface_distance, dice, hd95
from sparsert.reports.dvh import dvh_table, plot_dvh, write_dvh_csv
from sparsert.reports.metrics_table import metrics_rows
from sparsert.roles import structure_roles


@dataclass
class PipelineInputs:
    ct: Volume
    scribbles: Segmentation
    reference_structures: Segmentation | None = None
    reference_dose: Volume | None = None
    possible_dose_mask: Volume | None = None


@dataclass
class PipelineResult:
    steps_done: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    completed: Segmentation | None = None
    completion_metrics: dict | None = None
    dose: Volume | None = None
    dose_scores: dict | None = None


def completion_metrics(completed: Segmentation, reference: Segmentation) -> dict:
    """Dice, HD95 and ASD (mm) of each completed structure against the reference structure."""
    spacing = completed.geometry.spacing_kji
    rows = {}
    for seg in completed.segments:
        ref = reference.find(seg.name)
        if ref is None:
            continue
        rows[seg.name] = {
            "dice": dice(seg.mask, ref.mask),
            "hd95_mm": hd95(seg.mask, ref.mask, spacing),
            "asd_mm": average_surface_distance(seg.mask, ref.mask, spacing),
        }
    mean = sum(r["dice"] for r in rows.values()) / len(rows) if rows else None
    return {"mean_dice": mean, "structures": rows}


def run_scribble_dose(
    inputs: PipelineInputs,
    out_dir: Path,
    complete: Callable[[Volume, Segmentation], Segmentation],
    predict_dose: Callable[[Volume, Segmentation, Volume | None], Volume],
    on_step: Callable[[str], None] = lambda step: None,
) -> PipelineResult:
    """Run the steps in order; a step whose model is missing raises MissingComponentError, leaving
    the earlier steps' files in place.

    ``predict_dose(ct, structures, possible_dose_mask)`` gives the dose (Gy) on the CT grid. With a
    reference dose, the DVH plot shows it dashed, the metrics table compares the two, and (given the
    reference structures and possible-dose mask) the OpenKBP scores of the case are written.
    """
    result = PipelineResult()
    out_dir.mkdir(parents=True, exist_ok=True)

    on_step("scribble completion")
    result.completed = complete(inputs.ct, inputs.scribbles)
    result.files["structures"] = write_segmentation(result.completed, out_dir / "completed_structures.seg.nrrd", overwrite=True)
    if inputs.reference_structures is not None:
        result.completion_metrics = completion_metrics(result.completed, inputs.reference_structures)
        result.files["completion_metrics"] = write_json(result.completion_metrics, out_dir / "completion_metrics.json", overwrite=True)
    result.steps_done.append("completion")

    on_step("dose prediction")
    result.dose = predict_dose(inputs.ct, result.completed, inputs.possible_dose_mask)
    result.files["dose"] = write_dose(result.dose, out_dir / "predicted_dose.nrrd", overwrite=True)
    result.steps_done.append("dose")

    on_step("DVH and metrics")
    roles = structure_roles(result.completed.names)
    reference = inputs.reference_dose
    curves = dvh_table(result.dose, result.completed)
    result.files["dvh"] = write_dvh_csv(curves, out_dir / "dvh.csv")
    reference_curves = dvh_table(reference, result.completed, max_dose=float(reference.array.max())) if reference else None
    result.files["dvh_plot"] = plot_dvh(result.completed, curves, reference_curves, out_dir / "dvh.png")
    result.files["metrics"] = write_csv(metrics_rows(result.completed, roles, result.dose, reference), out_dir / "dose_metrics.csv", overwrite=True)
    if reference is not None and inputs.reference_structures is not None and inputs.possible_dose_mask is not None:
        case = DoseCase("case", reference.array, result.dose.array, inputs.possible_dose_mask.array > 0,
                        inputs.reference_structures.masks(), inputs.ct.geometry.voxel_volume_mm3)
        result.dose_scores = openkbp_scores([case])
        result.files["dose_scores"] = write_json(result.dose_scores, out_dir / "dose_scores.json", overwrite=True)
    result.steps_done.append("dvh")
    return result

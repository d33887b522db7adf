"""Evaluate completion methods on cases with dense structures, from simulated sparse scribbles.

For each case: simulate scribbles at the sparse setting (about every second slice holding a
structure, single-voxel-wide lines, seeded), complete them with each method (all methods get the
same scribbles), and score each structure with Dice, HD95 and average surface distance (mm) against
the dense truth; the time of the completion is recorded per case. Images are converted to
Hounsfield units first (OpenKBP stores HU + 1024), so windows are given in HU.
``sparsert evaluate completion`` is the command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparsert.completion import CompletedSegmentation, completer
from sparsert.data.datasets import Dataset
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.metrics.segmentation import average_surface_distance, dice, hd95
from sparsert.preprocessing.ct import ct_to_hu
from sparsert.scribbles import scribble_stats, simulate_scribbles
from sparsert.scribbles.simulate import EVAL_SCRIBBLES

SOFT_TISSUE_HU = (-160.0, 240.0)
# Options each method is evaluated with unless told otherwise: the random walker gains from a
# soft-tissue window (its edge weights are relative to the image spread), grow-cut does not
# (checked on OpenKBP validation cases), so it runs on raw HU as Slicer's effect does.
DEFAULT_OPTIONS: dict[str, dict] = {"randomwalker": {"window": SOFT_TISSUE_HU}}


@dataclass
class CaseResult:
    case_id: str
    method: str
    seconds: float  # completion only, not the scribble simulation
    dice: dict[str, float]  # per structure; 0.0 when the method returned nothing for it
    coverage: dict[str, float]  # fraction of each structure's voxels scribbled
    hd95_mm: dict[str, float] = field(default_factory=dict)  # inf when the method returned nothing
    asd_mm: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def evaluate_case(
    case_id: str,
    image: Volume,
    structures: Segmentation,
    methods: dict[str, Callable[[Volume, Segmentation], Segmentation]],
    *,
    seed: int = 0,
    slice_fraction: float = 0.5,
    body_mask: np.ndarray | None = None,
) -> list[CaseResult]:
    """Scribble ``structures`` once (seeded; background mostly inside ``body_mask`` when given),
    complete with every method of ``methods`` (name -> ``complete(image, scribbles)``), and score
    each non-empty structure."""
    present = Segmentation(structures.geometry, [s for s in structures.segments if s.mask.any()])
    setting = {**EVAL_SCRIBBLES, "slice_fraction": slice_fraction}
    scribbles = simulate_scribbles(present, body_mask=body_mask, seed=seed, **setting)
    coverage = {name: s.coverage for name, s in scribble_stats(scribbles, present).items()}
    spacing = image.geometry.spacing_kji
    results = []
    for name, complete in methods.items():
        start = time.perf_counter()
        completed = complete(image, scribbles)
        seconds = time.perf_counter() - start
        result = CaseResult(case_id, name, seconds, {}, coverage)
        for seg in present.segments:
            found = completed.find(seg.name)
            mask = found.mask if found is not None else np.zeros_like(seg.mask)
            result.dice[seg.name] = dice(mask, seg.mask)
            result.hd95_mm[seg.name] = hd95(mask, seg.mask, spacing)
            result.asd_mm[seg.name] = average_surface_distance(mask, seg.mask, spacing)
        result.warnings = list(completed.warnings) if isinstance(completed, CompletedSegmentation) else []
        results.append(result)
    return results


def evaluate_dataset(
    dataset: Dataset,
    methods: Sequence[str],
    *,
    case_ids: Sequence[str] | None = None,
    seed: int = 0,
    slice_fraction: float = 0.5,
    options: dict[str, dict] | None = None,
    on_case: Callable[[str], None] | None = None,
) -> list[CaseResult]:
    """Every method on every case; the same scribbles for all methods (seed + case index).

    ``options`` maps a method to its options, replacing its :data:`DEFAULT_OPTIONS` (options a
    method does not take, such as ``device`` for the classical peers, are dropped). The
    possible-dose mask, when the case has one, stands in for the body (as in SCM training).
    """
    options = {**DEFAULT_OPTIONS, **(options or {})}
    complete = {m: completer(m, **options.get(m, {})) for m in methods}
    results = []
    for index, case_id in enumerate(case_ids or dataset.case_ids()):
        case = dataset.load(case_id)
        if case.structures is None:
            raise InputError(f"case {case_id}: has no structures to evaluate against")
        ct = case.images[case.reference_name]
        image = ct.with_array(ct_to_hu(ct.array))
        body = case.possible_dose_mask.array if case.possible_dose_mask is not None else None
        results += evaluate_case(
            case_id, image, case.structures, complete, seed=seed + index, slice_fraction=slice_fraction, body_mask=body
        )
        if on_case:
            on_case(case_id)
    return results


def summarize(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """Per method: mean Dice per structure (over cases holding it), "mean" over all scores, "seconds" per case."""
    summary: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r.method for r in results):
        mine = [r for r in results if r.method == method]
        per_structure: dict[str, list[float]] = {}
        for r in mine:
            for name, value in r.dice.items():
                per_structure.setdefault(name, []).append(value)
        row = {name: float(np.mean(values)) for name, values in sorted(per_structure.items())}
        row["mean"] = float(np.mean([v for values in per_structure.values() for v in values]))
        row["seconds"] = float(np.mean([r.seconds for r in mine]))
        row["hd95_mm"] = _finite_mean([v for r in mine for v in r.hd95_mm.values()])
        row["asd_mm"] = _finite_mean([v for r in mine for v in r.asd_mm.values()])
        summary[method] = row
    return summary


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per structure, one column per method."""
    methods = list(summary)
    rows = list(dict.fromkeys(k for row in summary.values() for k in row if k not in ("mean", "seconds", "hd95_mm", "asd_mm")))
    lines = ["structure".ljust(14) + "".join(m.rjust(14) for m in methods)]
    for name in [*rows, "mean", "hd95_mm", "asd_mm", "seconds"]:
        cells = "".join(
            (f"{summary[m][name]:.3f}" if name in summary[m] else "-").rjust(14) for m in methods
        )
        lines.append(name.ljust(14) + cells)
    return "\n".join(lines)


def _finite_mean(values: list[float]) -> float:
    """Mean over finite distances (a structure the method missed has an infinite HD95; counted apart)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("inf")

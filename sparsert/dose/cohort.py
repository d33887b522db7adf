"""Dose predictions for a whole data set, from its structures or from simulated scribbles.

Each case's dose is written as ``<case>.nrrd``; cases on an OpenKBP patient grid also get the
challenge's submission file ``pt_N.csv`` so the challenge's own evaluator can score them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sparsert.data.datasets import Dataset
from sparsert.data.openkbp_csv import is_challenge_grid, write_openkbp_prediction
from sparsert.dose.predict import DoseModel, predict_dose
from sparsert.errors import InputError
from sparsert.io.dose_io import write_dose
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.scribbles.simulate import EVAL_SCRIBBLES, simulate_scribbles

PROMPTS = ("mask", "scribble")


@dataclass
class CohortCase:
    case_id: str
    files: list[Path]
    seconds: float  # completion (scribble prompt) and dose prediction


def predict_cohort(
    dataset: Dataset,
    model: DoseModel,
    out_dir: Path,
    prompt: str = "mask",
    complete: Callable[[Volume, Segmentation], Segmentation] | None = None,
    case_ids: list[str] | None = None,
    seed: int = 0,
    flips: bool = False,
    overwrite: bool = False,
    on_case: Callable[[str], None] | None = None,
) -> list[CohortCase]:
    """Predict every case; ``prompt="scribble"`` simulates seeded scribbles from the structures and
    completes them with ``complete`` before predicting, as a user painting scribbles would."""
    if prompt not in PROMPTS:
        raise InputError(f"prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")
    if prompt == "scribble" and complete is None:
        raise InputError("the scribble prompt needs a completion method")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for index, case_id in enumerate(case_ids or dataset.case_ids()):
        case = dataset.load(case_id)
        if case.structures is None:
            raise InputError(f"{case_id}: case has no structures")
        ct = case.images[case.reference_name]
        structures = Segmentation(case.geometry, [s for s in case.structures.segments if s.mask.any()])
        start = time.perf_counter()
        if prompt == "scribble":
            body = case.possible_dose_mask.array > 0 if case.possible_dose_mask is not None else None
            scribbles = simulate_scribbles(structures, body_mask=body, seed=seed + index, **EVAL_SCRIBBLES)
            structures = complete(ct, scribbles)
        dose = predict_dose(model, ct, structures, case.possible_dose_mask, flips=flips)
        seconds = time.perf_counter() - start
        stem = case_id.split("/")[-1]
        files = [write_dose(dose, out_dir / f"{stem}.nrrd", overwrite=overwrite)]
        if is_challenge_grid(dose.geometry):
            files.append(write_openkbp_prediction(dose, out_dir / f"{stem}.csv", overwrite=overwrite))
        results.append(CohortCase(case_id, files, seconds))
        if on_case:
            on_case(case_id)
    return results

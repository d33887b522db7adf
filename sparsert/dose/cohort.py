"""Dose predictions for a whole data set, from its structures or from simulated scribbles.

Each case's dose is written as ``<case>.nrrd``; cases on an OpenKBP patient grid also get the
challenge's submission file ``pt_N.csv`` so the challenge's own evaluator can score them.
:mod:`sparsert.cohort` runs the job (workers, torchrun shards, done cases skipped, summary).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sparsert.cohort import CaseFunction, output_stem
from sparsert.completion.cohort import (
    Complete, case_structures, complete_simulated, load_completer, simulated_scribbles,
)
from sparsert.data.datasets import Dataset
from sparsert.data.openkbp_csv import is_challenge_grid, write_openkbp_prediction
from sparsert.dose.predict import DoseModel, default_model, load_dose_model, predict_dose, takes_scribbles
from sparsert.errors import InputError
from sparsert.io.dose_io import write_dose

PROMPTS = ("mask", "scribble")


@dataclass(frozen=True)
class DoseCohort:
    """Predict every case (a :class:`~sparsert.cohort.CohortJob`); ``prompt="scribble"`` simulates
    seeded scribbles from the structures and completes them with ``completion`` first, as a user
    painting scribbles would (a model trained on scribbles, the baseline, takes them as drawn)."""

    dataset: Dataset
    out_dir: Path
    model: str | None = None  # registry name or model file; None: the default model of the prompt
    device: str = "cpu"
    prompt: str = "mask"
    completion: str = "scm"
    completion_model: str = "scm"
    seed: int = 0
    flips: bool = False
    precision: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.prompt not in PROMPTS:
            raise InputError(f"prompt must be one of {', '.join(PROMPTS)}, got {self.prompt!r}")

    def outputs(self, case_id: str) -> list[Path]:
        return [self.out_dir / f"{output_stem(case_id)}.nrrd"]

    def load(self) -> CaseFunction:
        model = load_dose_model(self.model or default_model(self.prompt), self.device)
        complete = None
        as_drawn = takes_scribbles(model, self.prompt)
        if self.prompt == "scribble" and not as_drawn:
            complete = load_completer(self.completion, self.completion_model, self.device, precision=self.precision)
        return partial(self._predict, model, complete)

    def _predict(self, model: DoseModel, complete: Complete | None, case_id: str) -> list[Path]:
        case = self.dataset.load(case_id)
        if self.prompt == "mask":
            structures = case_structures(case)
        elif complete is None:
            structures = simulated_scribbles(self.dataset, case, self.seed)
        else:
            structures = complete_simulated(self.dataset, case, complete, self.seed)
        ct = case.images[case.reference_name]
        dose = predict_dose(model, ct, structures, case.possible_dose_mask, flips=self.flips, precision=self.precision)
        files = []
        if is_challenge_grid(dose.geometry):
            path = self.out_dir / f"{output_stem(case_id)}.csv"
            files.append(write_openkbp_prediction(dose, path, overwrite=self.overwrite))
        # The dose file last: it alone marks the case done.
        [path] = self.outputs(case_id)
        return files + [write_dose(dose, path, overwrite=self.overwrite)]

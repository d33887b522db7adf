"""Completion of a whole data set from scribbles simulated from its structures (``sparsert complete --data``).

The scribbles are the evaluation's sparse setting, seeded by the seed plus the case's index in the
data set, so a case gets the same scribbles in any worker or rank; the dose cohort's scribble
prompt completes them the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sparsert.cohort import CaseFunction, output_stem
from sparsert.completion import CompletedSegmentation, completer
from sparsert.completion.scm import load_scm
from sparsert.data.case import Case
from sparsert.data.datasets import Dataset
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.segmentation_io import write_segmentation
from sparsert.io.volume import Volume
from sparsert.scribbles.simulate import EVAL_SCRIBBLES, simulate_scribbles

Complete = Callable[[Volume, Segmentation], CompletedSegmentation]


def load_completer(method: str, model: str, device: str, flips: bool = True, precision: str = "auto") -> Complete:
    """``complete(image, scribbles)`` for ``method``, with the SCM network loaded once rather than per call."""
    net = load_scm(model, device=device) if method == "scm" else None
    return completer(method, model=model, device=device, net=net, flips=flips, precision=precision)


def case_structures(case: Case) -> Segmentation:
    """The case's non-empty structures."""
    if case.structures is None:
        raise InputError(f"{case.case_id}: case has no structures")
    return Segmentation(case.geometry, [s for s in case.structures.segments if s.mask.any()])


def simulated_scribbles(dataset: Dataset, case: Case, seed: int) -> Segmentation:
    """The case's structures scribbled (background mostly inside its possible-dose mask), seeded per case."""
    body = case.possible_dose_mask.array > 0 if case.possible_dose_mask is not None else None
    return simulate_scribbles(case_structures(case), body_mask=body,
                              seed=seed + dataset.case_ids().index(case.case_id), **EVAL_SCRIBBLES)


def complete_simulated(dataset: Dataset, case: Case, complete: Complete, seed: int) -> CompletedSegmentation:
    """The case's :func:`simulated_scribbles`, completed."""
    return complete(case.images[case.reference_name], simulated_scribbles(dataset, case, seed))


@dataclass(frozen=True)
class CompletionCohort:
    """Each case's completed structures as ``<case>.seg.nrrd`` (a :class:`~sparsert.cohort.CohortJob`)."""

    dataset: Dataset
    out_dir: Path
    method: str = "scm"
    model: str = "scm"
    device: str = "cpu"
    seed: int = 0
    flips: bool = True  # scm: average with the mirrored pass
    precision: str = "auto"
    overwrite: bool = False

    def outputs(self, case_id: str) -> list[Path]:
        return [self.out_dir / f"{output_stem(case_id)}.seg.nrrd"]

    def load(self) -> CaseFunction:
        return partial(self._complete, load_completer(self.method, self.model, self.device, self.flips, self.precision))

    def _complete(self, complete: Complete, case_id: str) -> list[Path]:
        completed = complete_simulated(self.dataset, self.dataset.load(case_id), complete, self.seed)
        return [write_segmentation(completed, self.outputs(case_id)[0], overwrite=self.overwrite)]

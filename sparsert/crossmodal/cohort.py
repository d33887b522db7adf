"""Tumour segmentation of a whole data set of CT + MR cases (``sparsert crossmodal --data``).

Each case's tumour is written as ``<case>.seg.nrrd`` on its CT grid; a case without an MR falls
back to its CT, with the warning the single-case command gives. :mod:`sparsert.cohort` runs the job.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sparsert.cohort import CaseFunction, output_stem
from sparsert.crossmodal.inference import DEFAULT_MODEL, CrossModalModel, load_model, segment_tumour
from sparsert.data.datasets import Dataset
from sparsert.io.segmentation_io import write_segmentation


@dataclass(frozen=True)
class CrossModalCohort:
    """Segment every case (a :class:`~sparsert.cohort.CohortJob`)."""

    dataset: Dataset
    out_dir: Path
    model: str = DEFAULT_MODEL
    device: str = "cpu"
    precision: str = "auto"
    overwrite: bool = False

    def outputs(self, case_id: str) -> list[Path]:
        return [self.out_dir / f"{output_stem(case_id)}.seg.nrrd"]

    def load(self) -> CaseFunction:
        return partial(self._segment, load_model(self.model, device=self.device))

    def _segment(self, model: CrossModalModel, case_id: str) -> list[Path]:
        case = self.dataset.load(case_id)
        ct, mr = case.images[case.reference_name], case.images.get("mr")
        result = segment_tumour(
            ct, mr, model, ct_name=f"{case_id} CT", mr_name=f"{case_id} MR", precision=self.precision
        )
        for warning in result.warnings:
            print(f"sparsert crossmodal: warning: {case_id}: {warning}", file=sys.stderr)
        [path] = self.outputs(case_id)
        return [write_segmentation(result, path, overwrite=self.overwrite)]

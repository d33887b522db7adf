"""Builds Resources/SampleData/OpenKBP-pt_201 from the shared OpenKBP data (run once; output committed).

The CT is shifted from the challenge's stored offset (HU + 1024) to Hounsfield units so that it
displays correctly in Slicer; dose, masks and structures are unchanged. The scribbles are simulated
at the completion issue's evaluation setting (every second slice, single-voxel lines, seed 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sparsert.data.datasets import open_dataset
from sparsert.data.case_folder import write_case_folder
from sparsert.io.segmentation_io import write_segmentation
from sparsert.preprocessing.ct import ct_to_hu
from sparsert.resources import sample_data_dir
from sparsert.scribbles.simulate import simulate_scribbles

ATTRIBUTION = """# Sample case: OpenKBP validation patient pt_201

From the OpenKBP Grand Challenge (AAPM 2020) head-and-neck IMRT data set, MIT licence
(repository ababier/open-kbp). Cite: A. Babier et al., "OpenKBP: The open-access knowledge-based
planning grand challenge and dataset", Medical Physics 48:5549-5561, 2021.

Made by `scripts/make_sample_data.py` from the NIfTI copy of the case: `ct.nrrd` in Hounsfield units
(the challenge stores HU + 1024), `dose.nrrd` (Gy), `possible_dose_mask.nrrd` and
`structures.seg.nrrd` unchanged; `scribbles.seg.nrrd` simulated by SparseRT's scribble generator
(about every second slice holding each structure, single-voxel-wide lines, plus background strokes;
seed 0). Not a clinical plan.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/openkbp-nifti/validation"))
    parser.add_argument("--case", default="pt_201")
    args = parser.parse_args()
    case = open_dataset(f"cases:{args.data}").load(args.case)
    ct = case.images["ct"]
    case.images["ct"] = ct.with_array(ct_to_hu(ct.array).astype(np.int16))
    out = sample_data_dir() / f"OpenKBP-{args.case}"
    write_case_folder(case, out, overwrite=True)
    scribbles = simulate_scribbles(
        case.structures, slice_fraction=0.5, style="line", line_width_vox=1,
        body_mask=case.possible_dose_mask.array > 0, seed=0,
    )
    write_segmentation(scribbles, out / "scribbles.seg.nrrd", overwrite=True)
    (out / "ATTRIBUTION.md").write_text(ATTRIBUTION)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""How much of the dose error comes from the dose network's working grid alone.

Takes each reference dose of a data set down to the working grid and back (exactly as a prediction
travels), zeroes it outside the possible-dose mask, and scores it against the original with the
OpenKBP scores. A network that is perfect on the working grid cannot score better than this.

    python benchmarks/dose_resolution_floor.py --data cases:../shared/data/openkbp-nifti/validation
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sparsert.data.datasets import open_dataset
from sparsert.dose.grid import as_batch, to_ct_grid, to_working, working_shape
from sparsert.metrics.dose import DoseCase, openkbp_scores
from sparsert.training.dose import DoseTrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--spacing", type=float, nargs=3, default=DoseTrainConfig().working_spacing_kji,
                        metavar=("K", "J", "I"), help="working grid spacing in mm, slice axis first")
    args = parser.parse_args()
    dataset = open_dataset(args.data)
    cases = []
    for case_id in dataset.case_ids():
        case = dataset.load(case_id)
        dose = case.dose.array.astype(np.float32)
        shape = working_shape(dose.shape, case.geometry.spacing_kji, args.spacing)
        back = to_ct_grid(to_working(as_batch(dose)[None], shape), dose.shape)[0, 0].numpy()
        body = case.possible_dose_mask.array > 0
        cases.append(DoseCase(case_id, dose, back * body, body, case.structures.masks(), case.geometry.voxel_volume_mm3))
    scores = openkbp_scores(cases)
    print(json.dumps({"data": args.data, "spacing_kji_mm": list(args.spacing), "cases": len(cases),
                      "dose_score": round(scores["dose_score"], 3), "dvh_score": round(scores["dvh_score"], 3)}))


if __name__ == "__main__":
    main()

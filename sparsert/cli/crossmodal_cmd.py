"""``sparsert crossmodal``: segment a tumour from a CT and a registered MR with the fusion network."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sparsert.cli.common import (
    ProgressCallback, add_cohort_options, add_device_option, add_overwrite_option, add_precision_option,
)
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "crossmodal",
        help="tumour segmentation from CT + MR with the scribble-trained fusion network (CmFNet)",
        description="Segments the tumour on the CT grid. The MR is resampled onto the CT through physical space "
        "(the images must be registered, or --transform given); without --mr the CT alone is used, with a warning. "
        "A cohort: --data; cases whose segmentation exists are skipped (unless --overwrite), a failed case is "
        "reported and the others go on, summary.csv lists them all.",
    )
    single = parser.add_argument_group("one case")
    single.add_argument("--ct", metavar="CT", help="CT image in HU (NRRD, NIfTI, MHA, or a DICOM folder)")
    single.add_argument("--mr", metavar="MR", help="MR image of the same patient (any intensity scale)")
    single.add_argument("--transform", metavar="T.tfm",
                        help="transform mapping CT points into the MR's space (ITK file; a registration with the CT fixed)")
    single.add_argument("--scribbles", metavar="S.seg.nrrd",
                        help="tumour scribbles (any segment) and optional background strokes (segment 'Background') "
                        "of this case: a copy of the model is fine-tuned on them before it segments")
    single.add_argument("--fine-tune-steps", type=int, default=30, metavar="N",
                        help="optimiser steps of that fine-tuning (default 30)")
    cohort = parser.add_argument_group("a cohort")
    cohort.add_argument("--data", metavar="DIR", help=DATA_HELP + " (cases with a CT and an MR, e.g. sts:DIR)")
    add_cohort_options(cohort)
    parser.add_argument("--out", required=True, metavar="OUT.seg.nrrd|OUT_DIR",
                        help="one case: the segmentation (.seg.nrrd, or a labelmap image); a cohort: a folder")
    parser.add_argument("--model", default="crossmodal", metavar="NAME|PATH",
                        help="registered model name or checkpoint file (default: crossmodal)")
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.ct is None) == (args.data is None):
        raise InputError("give either --ct (one case) or --data (a cohort)")
    if args.data is not None and (args.mr or args.transform or args.scribbles):
        raise InputError("--mr, --transform and --scribbles are for one case (--ct), not --data")
    return run_cohort(args) if args.data else run_case(args)


def run_case(args: argparse.Namespace) -> int:
    from sparsert.crossmodal import TUMOUR, FineTuning, load_model, read_transform, segment_tumour
    from sparsert.io.segmentation_io import read_segmentation, write_segmentation
    from sparsert.io.volume import read_image

    ct = read_image(args.ct)
    mr = read_image(args.mr) if args.mr else None
    transform = read_transform(args.transform) if args.transform else None
    if transform is not None and mr is None:
        raise InputError("--transform applies to the MR: give --mr too")
    scribbles = read_segmentation(args.scribbles) if args.scribbles else None
    model = load_model(args.model, device=args.device)
    start = time.perf_counter()
    result = segment_tumour(ct, mr, model, transform=transform, ct_name=args.ct, mr_name=args.mr or "MR",
                            scribbles=scribbles, scribbles_name=args.scribbles or "scribbles",
                            fine_tuning=FineTuning(steps=args.fine_tune_steps), precision=args.precision)
    seconds = time.perf_counter() - start
    for warning in result.warnings:
        print(f"sparsert crossmodal: warning: {warning}", file=sys.stderr)
    write_segmentation(result, args.out, overwrite=args.overwrite)
    volume_cc = result[TUMOUR].mask.sum() * ct.geometry.voxel_volume_mm3 / 1000.0
    tuned = f"fine-tuned for {args.fine_tune_steps} steps on {args.scribbles}, " if scribbles is not None else ""
    print(f"tumour {volume_cc:.1f} cc written to {args.out} ({tuned}{seconds:.1f} s)")
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    from sparsert import cohort
    from sparsert.crossmodal.cohort import CrossModalCohort
    from sparsert.data.datasets import open_dataset

    dataset = open_dataset(args.data)
    job = CrossModalCohort(dataset, Path(args.out), model=args.model, device=cohort.rank_device(args.device),
                           precision=args.precision, overwrite=args.overwrite)
    results = cohort.run(job, dataset.case_ids()[: args.max_cases], args.workers, ProgressCallback("segmenting"))
    return cohort.write_summary(results, job, "summary.json", {"data": str(dataset.root), "model": args.model})

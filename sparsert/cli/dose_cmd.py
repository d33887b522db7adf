"""``sparsert dose``: predicted 3D dose from a CT and its structures or scribbles, for a case or a cohort."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sparsert.cli.common import (
    ProgressCallback, add_cohort_options, add_device_option, add_overwrite_option, add_precision_option,
    parse_prescriptions,
)
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.errors import InputError
from sparsert.io.output import writable

MODEL_HELP = ("dose weights: registry name or .pt file (default: dose-mask for dense structures, dose-scribble "
              "for scribbles, which it was trained to take completed)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dose",
        help="predict the 3D dose (Gy) of a head-and-neck IMRT plan from structures or scribbles",
        description="One case: --ct with --structures or --scribbles (scribbles are completed into structures first, "
        "with --completion). A cohort: --data with --prompt; cases whose dose exists are skipped (unless --overwrite), "
        "a failed case is reported and the others go on, summary.csv lists them all. Targets are PTV<Gy> structures "
        "(or --prescription / --roles); organs are the OpenKBP organs under their usual spellings (map others in a roles file).",
    )
    single = parser.add_argument_group("one case")
    single.add_argument("--ct", metavar="CT.nrrd", help="the CT (image file or DICOM series folder); the dose is on its grid")
    prompts = single.add_mutually_exclusive_group()
    prompts.add_argument("--structures", metavar="S.seg.nrrd", help="dense structures (.seg.nrrd, labelmap or RTSTRUCT)")
    prompts.add_argument("--scribbles", metavar="S.seg.nrrd", help="scribbles, one segment per structure plus Background")
    single.add_argument("--body", metavar="B.nrrd", help="possible-dose (body) mask (default: found from the CT)")
    single.add_argument("--prescription", action="append", default=[], metavar="NAME=GY", help="make NAME a target prescribed GY")
    single.add_argument("--roles", metavar="roles.json", help='role overrides, e.g. {"Cord_PRV": {"role": "organ", "organ": "SpinalCord"}}')
    single.add_argument("--completed-out", metavar="S.seg.nrrd", help="with --scribbles: also write the completed structures")
    cohort = parser.add_argument_group("a cohort")
    cohort.add_argument("--data", metavar="DIR", help=DATA_HELP + " (cases with structures)")
    cohort.add_argument("--prompt", choices=("mask", "scribble"), default="mask",
                        help="predict from the dense structures, or from scribbles simulated from them (seeded) and completed")
    add_cohort_options(cohort)
    cohort.add_argument("--seed", type=int, default=0, help="scribble simulation seed")
    parser.add_argument("--out", required=True, metavar="DOSE.nrrd|PRED_DIR",
                        help="one case: the dose file (.dcm writes an RTDOSE of a DICOM --ct); a cohort: a folder")
    parser.add_argument("--model", metavar="NAME_OR_PATH", help=MODEL_HELP)
    parser.add_argument("--completion", default="scm", metavar="METHOD", help="completion method for scribbles (default: scm)")
    parser.add_argument("--completion-model", default="scm", metavar="NAME_OR_PATH", help="scm weights")
    parser.add_argument("--flips", action="store_true", help="average with the left-right mirrored prediction")
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_dose)


def run_dose(args: argparse.Namespace) -> int:
    if (args.ct is None) == (args.data is None):
        raise InputError("give either --ct (one case) or --data (a cohort)")
    if args.ct is not None and args.structures is None and args.scribbles is None:
        raise InputError("--ct needs --structures or --scribbles")
    if args.data is not None and (args.structures or args.scribbles or args.body or args.prescription or args.roles):
        raise InputError("--structures, --scribbles, --body, --prescription and --roles are for one case (--ct), not --data")
    return run_cohort(args) if args.data else run_case(args)


def _completer(args: argparse.Namespace):
    from sparsert.completion import completer

    return completer(args.completion, model=args.completion_model, device=args.device, precision=args.precision)


def run_case(args: argparse.Namespace) -> int:
    from sparsert.dose.predict import default_model, load_dose_model, predict_dose, takes_scribbles
    from sparsert.io.dose_io import write_dose
    from sparsert.io.segmentation_io import read_structures, write_structures
    from sparsert.io.volume import read_image
    from sparsert.roles import read_roles

    writable(args.out, args.overwrite)
    if args.completed_out:
        if args.scribbles is None:
            raise InputError("--completed-out is for --scribbles")
        writable(args.completed_out, args.overwrite)
    ct = read_image(args.ct)
    dicom_ct = args.ct if Path(args.ct).is_dir() else None
    body = read_image(args.body) if args.body else None
    roles = read_roles(args.roles) if args.roles else None
    model = load_dose_model(args.model or default_model("scribble" if args.scribbles else "mask"), args.device)
    start = time.perf_counter()
    as_drawn = takes_scribbles(model, "scribble" if args.scribbles else "mask")
    if args.scribbles:
        structures = read_structures(args.scribbles, dicom_ct or ct.geometry)
        if as_drawn:
            if args.completed_out:
                raise InputError(f"--completed-out: the dose model {model.source} takes the scribbles as drawn, "
                                 "nothing is completed")
        else:
            structures = _completer(args)(ct, structures)
            if args.completed_out:
                write_structures(structures, args.completed_out, reference_ct_folder=dicom_ct, overwrite=args.overwrite)
    else:
        structures = read_structures(args.structures, dicom_ct or ct.geometry)
    dose = predict_dose(model, ct, structures, body, roles, parse_prescriptions(args.prescription), flips=args.flips,
                        precision=args.precision)
    seconds = time.perf_counter() - start
    write_dose(dose, args.out, reference_ct_folder=dicom_ct, overwrite=args.overwrite)
    print(f"predicted dose (max {dose.array.max():.1f} Gy) from {len(structures.segments)} structure(s) in {seconds:.1f} s -> {args.out}")
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    from sparsert import cohort
    from sparsert.data.datasets import open_dataset
    from sparsert.dose.cohort import DoseCohort
    from sparsert.dose.predict import default_model

    dataset = open_dataset(args.data)
    job = DoseCohort(dataset, Path(args.out), model=args.model, device=cohort.rank_device(args.device),
                     prompt=args.prompt, completion=args.completion, completion_model=args.completion_model,
                     seed=args.seed, flips=args.flips, precision=args.precision, overwrite=args.overwrite)
    results = cohort.run(job, dataset.case_ids()[: args.max_cases], args.workers, ProgressCallback("predicting"))
    info = {"data": str(dataset.root), "prompt": args.prompt, "model": args.model or default_model(args.prompt),
            "completion": args.completion, "flips": args.flips, "precision": args.precision}
    return cohort.write_summary(results, job, "predictions.json", info)

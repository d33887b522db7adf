"""``sparsert complete`` (scribbles -> dense structures) and ``sparsert evaluate completion``."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from sparsert.cli.common import (
    ProgressCallback, add_cohort_options, add_device_option, add_overwrite_option, add_precision_option,
)
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.errors import InputError
from sparsert.io.json_io import write_json
from sparsert.io.output import writable

METHOD_HELP = "scm (the trained model, default), growcut (Slicer's Grow from seeds) or randomwalker"
SINGLE_PASS_HELP = ("scm: one network pass, without the average with the left-right mirrored pass (about half the "
                    "time, a little less accurate)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "complete",
        help="complete scribbles into dense structures",
        description="Scribbles are a .seg.nrrd with one segment per structure (named after it) and background strokes "
        "in a segment named Background; the output has one segment per scribbled structure (same names and colours) "
        "on the image grid. A cohort: --data, with sparse scribbles simulated from each case's structures (seeded); "
        "cases whose output exists are skipped (unless --overwrite), a failed case is reported and the others go on, "
        "summary.csv lists them all.",
    )
    single = parser.add_argument_group("one case")
    single.add_argument("--image", action="append", metavar="CT.nrrd",
                        help="the CT, an image file or a DICOM series folder (defines the output grid); repeat for co-registered images")
    single.add_argument("--scribbles", metavar="S.seg.nrrd", help="a .seg.nrrd, labelmap or DICOM RTSTRUCT")
    single.add_argument("--auto-background", action="store_true",
                        help="without Background strokes, use every voxel 20 mm away from all scribbles as background")
    cohort = parser.add_argument_group("a cohort")
    cohort.add_argument("--data", metavar="DIR", help=DATA_HELP + " (cases with dense structures)")
    add_cohort_options(cohort)
    cohort.add_argument("--seed", type=int, default=0, help="scribble simulation seed")
    parser.add_argument("--out", required=True, metavar="OUT.seg.nrrd|OUT_DIR",
                        help="output structures; ending in .dcm writes a DICOM RTSTRUCT (needs a DICOM CT folder as "
                        "--image); a cohort: a folder of <case>.seg.nrrd")
    parser.add_argument("--method", default="scm", help=METHOD_HELP)
    parser.add_argument("--model", default="scm", metavar="NAME_OR_PATH", help="scm weights: registry name or .pt file")
    parser.add_argument("--single-pass", dest="flips", action="store_false", help=SINGLE_PASS_HELP)
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_complete)


def register_evaluation(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "completion",
        help="Dice, HD95, ASD and time per case of completion methods on simulated sparse scribbles",
        description="Scribbles are simulated from each case's structures at the sparse setting (about every second "
        "slice holding a structure, single-voxel lines, seeded); every method completes the same scribbles.",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP + " (cases with dense structures)")
    parser.add_argument("--methods", nargs="+", default=["scm", "growcut", "randomwalker"], metavar="METHOD", help=METHOD_HELP)
    parser.add_argument("--model", default="scm", metavar="NAME_OR_PATH", help="scm weights: registry name or .pt file")
    parser.add_argument("--max-cases", type=int, metavar="N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slice-fraction", type=float, default=0.5, help="fraction of a structure's slices scribbled")
    parser.add_argument("--single-pass", dest="flips", action="store_false", help=SINGLE_PASS_HELP)
    parser.add_argument("--out", metavar="results.json")
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_evaluate)


def run_complete(args: argparse.Namespace) -> int:
    if (args.image is None) == (args.data is None):
        raise InputError("give either --image with --scribbles (one case) or --data (a cohort)")
    if args.image is not None and args.scribbles is None:
        raise InputError("--image needs --scribbles")
    if args.data is not None and (args.scribbles or args.auto_background):
        raise InputError("--scribbles and --auto-background are for one case (--image), not --data")
    return run_cohort(args) if args.data else run_case(args)


def run_case(args: argparse.Namespace) -> int:
    from sparsert.completion import completer
    from sparsert.io.segmentation_io import read_structures, write_structures
    from sparsert.io.volume import read_image

    writable(args.out, args.overwrite)
    image = read_image(args.image[0])
    if len(args.image) > 1:
        print(f"sparsert complete: warning: method '{args.method}' uses the first image only; "
              f"{', '.join(args.image[1:])} ignored", file=sys.stderr)
    dicom_ct = args.image[0] if Path(args.image[0]).is_dir() else None
    scribbles = read_structures(args.scribbles, dicom_ct or image.geometry)
    complete = completer(args.method, model=args.model, device=args.device, auto_background=args.auto_background,
                         flips=args.flips, precision=args.precision)
    start = time.perf_counter()
    completed = complete(image, scribbles)
    seconds = time.perf_counter() - start
    for warning in getattr(completed, "warnings", []):
        print(f"sparsert complete: warning: {warning}", file=sys.stderr)
    write_structures(completed, args.out, reference_ct_folder=dicom_ct, overwrite=args.overwrite)
    print(f"completed {len(completed.segments)} structure(s) ({', '.join(completed.names)}) with {args.method} "
          f"in {seconds:.1f} s -> {args.out}")
    return 0


def run_cohort(args: argparse.Namespace) -> int:
    from sparsert import cohort
    from sparsert.completion.cohort import CompletionCohort
    from sparsert.data.datasets import open_dataset

    dataset = open_dataset(args.data)
    job = CompletionCohort(dataset, Path(args.out), method=args.method, model=args.model,
                           device=cohort.rank_device(args.device), seed=args.seed, flips=args.flips,
                           precision=args.precision, overwrite=args.overwrite)
    results = cohort.run(job, dataset.case_ids()[: args.max_cases], args.workers, ProgressCallback("completing"))
    info = {"data": str(dataset.root), "method": args.method, "model": args.model, "seed": args.seed, "flips": args.flips,
            "precision": args.precision}
    return cohort.write_summary(results, job, "summary.json", info)


def run_evaluate(args: argparse.Namespace) -> int:
    import resource

    from sparsert.completion.evaluate import evaluate_dataset, format_summary, summarize
    from sparsert.data.datasets import open_dataset

    dataset = open_dataset(args.data)
    ids = dataset.case_ids()[: args.max_cases] if args.max_cases else dataset.case_ids()
    bar = ProgressCallback("evaluating")
    done = iter(range(1, len(ids) + 1))
    options = {"scm": {"model": args.model, "device": args.device, "flips": args.flips, "precision": args.precision}}
    results = evaluate_dataset(
        dataset, args.methods, case_ids=ids, seed=args.seed, slice_fraction=args.slice_fraction, options=options,
        on_case=lambda c: bar(next(done), len(ids), c),
    )
    summary = summarize(results)
    print(format_summary(summary))
    if args.out:
        write_json(
            {
                "data": str(dataset.root), "cases": len(ids), "seed": args.seed, "slice_fraction": args.slice_fraction,
                "flips": args.flips, "precision": args.precision,
                "summary": summary, "results": [asdict(r) for r in results],
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            },
            args.out, overwrite=args.overwrite,
        )
    return 0

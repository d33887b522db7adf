"""``sparsert data``: inspect and convert data sets."""

from __future__ import annotations

import argparse
import json

from sparsert.cli.common import ProgressCallback, add_overwrite_option
from sparsert.io.json_io import write_json

DATA_HELP = "data set folder; format detected, or forced as openkbp:DIR, cases:DIR or sts:DIR"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="inspect and convert data sets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    inspect = actions.add_parser("inspect", help="summary of a data set: cases, images, structures, dose")
    inspect.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    inspect.add_argument("--out", metavar="summary.json", help="write the full summary as JSON")
    add_overwrite_option(inspect)
    inspect.set_defaults(run=run_inspect)

    convert = actions.add_parser(
        "convert", help="write a data set as case folders of NRRD images and structures.seg.nrrd (Slicer-ready)"
    )
    convert.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    convert.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder (one sub-folder per case)")
    add_overwrite_option(convert)
    convert.set_defaults(run=run_convert)


def run_inspect(args: argparse.Namespace) -> int:
    from sparsert.data.convert import inspect_dataset
    from sparsert.data.datasets import open_dataset

    dataset = open_dataset(args.data)
    summary = inspect_dataset(dataset, progress=ProgressCallback("inspecting"))
    if args.out:
        write_json(summary, args.out, overwrite=args.overwrite)
    failed = [c for c in summary["cases"] if "error" in c]
    print(f"{dataset.format} data set at {dataset.root}: {len(summary['cases'])} case(s), {len(failed)} unreadable")
    for case in summary["cases"]:
        print(json.dumps(case) if "error" in case else _case_line(case))
    return 1 if failed else 0


def _case_line(case: dict) -> str:
    images = ", ".join(f"{name} {tuple(info['size'])}" for name, info in case.get("images", {}).items())
    structures = ", ".join(case.get("structures", {}))
    dose = case.get("dose")
    dose_text = f", dose max {dose['range'][1]:.1f} Gy" if dose else ""
    warn = f"  [{'; '.join(case['warnings'])}]" if case.get("warnings") else ""
    return f"  {case['case_id']}: {images}{dose_text}; structures: {structures or 'none'}{warn}"


def run_convert(args: argparse.Namespace) -> int:
    from sparsert.data.convert import convert_dataset
    from sparsert.data.datasets import open_dataset

    dataset = open_dataset(args.data)
    written = convert_dataset(dataset, args.out, overwrite=args.overwrite, progress=ProgressCallback("converting"))
    print(f"converted {len(written)} {dataset.format} case(s) to {args.out}")
    return 0

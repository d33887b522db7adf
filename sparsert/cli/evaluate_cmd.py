"""``sparsert evaluate``: score predictions against references."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsert.cli import complete_cmd
from sparsert.cli.common import add_overwrite_option, parse_key_values, progress
from sparsert.io.json_io import write_csv, write_json
from sparsert.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score predictions against references")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    complete_cmd.register_evaluation(kinds)

    dose = kinds.add_parser(
        "dose",
        help="OpenKBP dose and DVH scores, HI, Paddick CI and D95 errors",
        description="Score predicted doses. REF is a data set (OpenKBP CSV patients folder, case folders; "
        "forced as openkbp:DIR or cases:DIR) and PRED a folder of predictions (pt_N.csv challenge submissions, "
        "<case>.nrrd/.nii.gz or <case>/dose.<ext>); or REF and PRED are two dose files and --structures is given.",
    )
    dose.add_argument("--reference", required=True, metavar="REF")
    dose.add_argument("--predicted", required=True, metavar="PRED")
    dose.add_argument("--structures", metavar="S.seg.nrrd", help="reference structures, when REF is a dose file")
    dose.add_argument("--possible-dose-mask", metavar="MASK", help="when REF is a dose file (default: where either dose > 0)")
    dose.add_argument("--mask-prediction", action="store_true", help="zero predictions outside the possible-dose mask first")
    dose.add_argument("--prescription", action="append", default=[], metavar="NAME=GY", help="target prescription override")
    dose.add_argument("--out", metavar="metrics.json", help="write all scores and per-case detail as JSON")
    dose.add_argument("--csv", metavar="cases.csv", help="write one row per case (dose error, DVH error) as CSV")
    add_overwrite_option(dose)
    dose.set_defaults(run=run_dose)


def parse_prescriptions(items: list[str]) -> dict[str, float]:
    return parse_key_values(items, "--prescription", float, "NAME=GY, e.g. PTV70=70")


def run_dose(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.evaluation.dose import dataset_dose_cases, evaluate_dose, file_dose_case

    prescriptions = parse_prescriptions(args.prescription) or None
    reference, predicted = Path(args.reference), Path(args.predicted)
    if reference.is_file():
        if args.structures is None:
            raise InputError("--structures is required when --reference is a dose file (the DVH needs them)")
        mask = Path(args.possible_dose_mask) if args.possible_dose_mask else None
        cases = iter([file_dose_case(reference, predicted, Path(args.structures), mask)])
    else:
        if args.structures or args.possible_dose_mask:
            raise InputError("--structures and --possible-dose-mask apply only when --reference is a dose file")
        if not predicted.is_dir():
            raise InputError(f"{predicted}: expected a folder of predictions (the reference is a data set)")
        dataset = open_dataset(args.reference)
        cases = progress(dataset_dose_cases(dataset, predicted), "scoring", total=len(dataset))
    result = evaluate_dose(cases, mask_prediction=args.mask_prediction, prescriptions=prescriptions)
    if args.out:
        write_json(result, args.out, overwrite=args.overwrite)
    if args.csv:
        write_csv([{k: c[k] for k in ("case_id", "dose_error", "dvh_error")} for c in result["cases"]], args.csv, overwrite=args.overwrite)
    dvh = "n/a" if result["dvh_score"] is None else f"{result['dvh_score']:.4f}"
    print(f"dose score {result['dose_score']:.4f} Gy, DVH score {dvh} Gy over {result['n_cases']} case(s)")
    return 0

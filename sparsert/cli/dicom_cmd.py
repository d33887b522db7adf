"""``sparsert dicom``: convert between DICOM RT (CT series, RTSTRUCT, RTDOSE) and case folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsert.cli.common import add_overwrite_option
from sparsert.errors import InputError

CT_HELP = "folder of the CT series (other files in it are ignored)"
SERIES_HELP = "SeriesInstanceUID of the CT series, when the folder holds several"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dicom", help="convert DICOM RT (CT, RTSTRUCT, RTDOSE) to and from NRRD")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    to_nrrd = actions.add_parser(
        "to-nrrd", help="CT series (+ RTSTRUCT, RTDOSE) -> case folder: ct.nrrd, structures.seg.nrrd, dose.nrrd",
        description="Structures are rasterised and the dose resampled onto the CT grid.",
    )
    to_nrrd.add_argument("--ct", required=True, metavar="CT_DIR", help=CT_HELP)
    to_nrrd.add_argument("--series", metavar="UID", help=SERIES_HELP)
    to_nrrd.add_argument("--rtstruct", metavar="RS.dcm", help="RT structure set drawn on the CT")
    to_nrrd.add_argument("--rtdose", metavar="RD.dcm", help="RT dose in Gy, in the CT's frame of reference")
    to_nrrd.add_argument("--out", required=True, metavar="CASE_DIR", help="case folder to write")
    add_overwrite_option(to_nrrd)
    to_nrrd.set_defaults(run=run_to_nrrd)

    rtdose = actions.add_parser(
        "rtdose", help="dose image (Gy) -> RTDOSE of the CT series (research use, not a clinical plan)"
    )
    rtdose.add_argument("--dose", required=True, metavar="DOSE", help="dose image in Gy (.nrrd, .nii.gz...)")
    rtdose.add_argument("--ct", required=True, metavar="CT_DIR", help=CT_HELP)
    rtdose.add_argument("--series", metavar="UID", help=SERIES_HELP)
    rtdose.add_argument("--plan", metavar="RP.dcm", help="RT plan of the same patient for the dose to reference")
    rtdose.add_argument("--bits", type=int, choices=(16, 32), default=32, help="bits per dose value (default: 32)")
    rtdose.add_argument("--out", required=True, metavar="RD.dcm")
    add_overwrite_option(rtdose)
    rtdose.set_defaults(run=run_rtdose)

    rtstruct = actions.add_parser(
        "rtstruct", help="structures (.seg.nrrd, labelmap, mask folder) -> RTSTRUCT of the CT series"
    )
    rtstruct.add_argument("--structures", required=True, metavar="S.seg.nrrd")
    rtstruct.add_argument("--ct", required=True, metavar="CT_DIR", help=CT_HELP)
    rtstruct.add_argument("--series", metavar="UID", help=SERIES_HELP)
    rtstruct.add_argument("--out", required=True, metavar="RS.dcm")
    add_overwrite_option(rtstruct)
    rtstruct.set_defaults(run=run_rtstruct)


def run_to_nrrd(args: argparse.Namespace) -> int:
    from sparsert.data.case import Case
    from sparsert.data.case_folder import write_case_folder
    from sparsert.io.dicom.series import read_dicom_series
    from sparsert.io.dose_io import read_dose
    from sparsert.io.segmentation_io import read_structures

    series = read_dicom_series(args.ct, args.series)
    out = Path(args.out)
    case = Case(out.name, {"ct": series.volume}, source=series.folder, files={"ct": series.folder})
    if args.rtstruct:
        case.structures = read_structures(args.rtstruct, series)
        case.files["structures"] = Path(args.rtstruct)
    if args.rtdose:
        case.dose = read_dose(args.rtdose, series)
        case.files["dose"] = Path(args.rtdose)
    case.validate()
    write_case_folder(case, out, overwrite=args.overwrite)
    structures = ", ".join(case.structures.names) if case.structures is not None else "none"
    dose = f", dose max {case.dose.array.max():.2f} Gy" if case.dose is not None else ""
    print(f"wrote {out}: ct {series.geometry.size}{dose}; structures: {structures}")
    for warning in case.warnings:
        print(f"warning: {warning}")
    return 0


def run_rtdose(args: argparse.Namespace) -> int:
    from sparsert.io.dicom.rtdose import write_rtdose
    from sparsert.io.dicom.series import read_dicom_series
    from sparsert.io.dose_io import read_dose

    _require_dcm(args.out)
    series = read_dicom_series(args.ct, args.series)
    path = write_rtdose(read_dose(args.dose), args.out, series, plan=args.plan, bits=args.bits, overwrite=args.overwrite)
    print(f"wrote {path}: RTDOSE of series {series.series_uid} (research use, not a clinical plan)")
    return 0


def run_rtstruct(args: argparse.Namespace) -> int:
    from sparsert.io.dicom.rtstruct import write_rtstruct
    from sparsert.io.dicom.series import read_dicom_series
    from sparsert.io.segmentation_io import read_structures

    _require_dcm(args.out)
    series = read_dicom_series(args.ct, args.series)
    seg = read_structures(args.structures)
    path = write_rtstruct(seg, args.out, series, overwrite=args.overwrite)
    print(f"wrote {path}: {len(seg.segments)} ROI(s) on series {series.series_uid}: {', '.join(seg.names)}")
    return 0


def _require_dcm(out: str) -> None:
    if Path(out).suffix.lower() != ".dcm":
        raise InputError(f"{out}: DICOM RT output names end in .dcm")

"""``sparsert scene``: a Slicer scene bundle (.mrb) reviewing a dose over its CT and structures.

The same arguments drive the ScribbleDose batch script (``ScribbleDose/Resources/Scripts/
ScribbleDoseBatch.py``), which runs under ``Slicer --python-script`` too.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from sparsert.cli.common import add_overwrite_option, parse_prescriptions
from sparsert.errors import InputError, MissingComponentError
from sparsert.roles import StructureRole, read_roles, structure_roles

DESCRIPTION = (
    "Build the dose review scene: the dose washed over the CT (SlicerRT-compatible dose volume), isodose "
    "lines, a DVH table per structure, the DVH chart (reference dashed) and the plan metrics table, saved "
    "as a Slicer scene bundle; optionally axial/coronal/sagittal snapshots and a DVH figure."
)
NO_DOSE_MODEL = (
    "dose prediction from scribbles is not available yet (no trained dose model): pass dense structures with "
    "--structures and the dose you have (e.g. from a planning system) with --dose"
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "scene", help="dose review scene (.mrb) with isodoses, DVHs and metrics", description=DESCRIPTION
    )
    add_scene_arguments(parser)
    parser.set_defaults(run=run)


def add_scene_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``sparsert scene`` (shared with the ScribbleDose batch script)."""
    parser.add_argument("--ct", required=True, metavar="CT.nrrd", help="planning CT (HU)")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument(
        "--structures", metavar="S.seg.nrrd", help="dense structures (segmentation, labelmap or mask folder)"
    )
    inputs.add_argument("--scribbles", metavar="S.seg.nrrd", help="scribbles, for a predicted dose (not available yet)")
    parser.add_argument("--dose", metavar="DOSE.nrrd", help="the dose to review (Gy)")
    parser.add_argument(
        "--reference-dose", metavar="D.nrrd", help="a dose to compare with (Gy): dashed DVHs, differences"
    )
    parser.add_argument(
        "--prescription", action="append", default=[], metavar="NAME=GY",
        help="make NAME a target prescribed GY (default: PTV<GY> names), repeatable",
    )
    parser.add_argument(
        "--roles", metavar="roles.json", help='role overrides: {"name": {"role": "target", "prescription_gy": 70}}'
    )
    parser.add_argument("--out", required=True, metavar="scene.mrb", help="scene bundle to write")
    parser.add_argument("--snapshots", metavar="DIR", help="write axial/coronal/sagittal.png and dvh.png here")
    add_overwrite_option(parser)


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse what cannot be done yet: a dose predicted from scribbles, or structures without a dose."""
    if args.scribbles is not None:
        raise MissingComponentError(NO_DOSE_MODEL)
    if args.dose is None:
        raise InputError("--dose is required with --structures (the dose to show)")


def roles_from_args(args: argparse.Namespace, names: Iterable[str]) -> dict[str, StructureRole]:
    """Roles of ``names``: guessed from the names, then --roles, then --prescription."""
    overrides = read_roles(args.roles) if args.roles else None
    return structure_roles(names, overrides, parse_prescriptions(args.prescription) or None)


def run(args: argparse.Namespace) -> int:
    check_inputs(args)
    from sparsert.mrml import HeadlessSlicer
    from sparsert.mrml.dose_scene import build_dose_scene, load_case, save_dose_scene

    headless = HeadlessSlicer()
    nodes = load_case(headless.scene, args.ct, args.structures, args.dose, args.reference_dose)
    segmentation = nodes["structures"].GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    roles = roles_from_args(args, names)
    built = build_dose_scene(headless.scene, nodes["ct"], nodes["structures"], nodes["dose"], nodes["reference"], roles)
    written = save_dose_scene(headless.scene, headless.app_logic, built, args.out, args.snapshots, args.overwrite)
    print(summary(built, written))
    return 0


def summary(built, written: dict) -> str:
    """What was written, and what 100 % means (one line per item)."""
    rx = built.normalisation
    lines = [f"100 % = {rx.gy:g} Gy ({rx.source}); {len(built.isodoses.models)} isodose levels, "
             f"{len(built.dvh_tables)} DVH tables, {len(built.metrics)} metric rows"]
    lines += [f"{name}: {path}" for name, path in written.items()]
    return "\n".join(lines)

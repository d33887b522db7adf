"""``sparsert scene``: a Slicer scene bundle (.mrb) reviewing a dose over its CT and structures.

The same arguments drive the ScribbleDose batch script (``ScribbleDose/Resources/Scripts/
ScribbleDoseBatch.py``), which runs under ``Slicer --python-script`` too.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from pathlib import Path

from sparsert.cli.common import add_device_option, add_overwrite_option, parse_prescriptions
from sparsert.errors import InputError
from sparsert.io.output import writable
from sparsert.roles import StructureRole, read_roles, structure_roles

DESCRIPTION = (
    "Build the dose review scene: the dose washed over the CT (SlicerRT-compatible dose volume), isodose "
    "lines, a DVH table per structure, the DVH chart (reference dashed) and the plan metrics table, saved "
    "as a Slicer scene bundle; optionally axial/coronal/sagittal snapshots and a DVH figure."
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
    inputs.add_argument("--scribbles", metavar="S.seg.nrrd", help="scribbles: completed into structures, then the dose is predicted")
    parser.add_argument("--dose", metavar="DOSE.nrrd", help="the dose to review (Gy); without it the dose is predicted")
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
    parser.add_argument("--model", metavar="NAME_OR_PATH", help="dose weights for a predicted dose (default: dose-mask "
                        "from --structures, dose-scribble from --scribbles)")
    parser.add_argument("--completion", default="scm", metavar="METHOD", help="completion method for --scribbles (default: scm)")
    add_device_option(parser)
    add_overwrite_option(parser)


def prepare_inputs(args: argparse.Namespace, workdir: Path) -> tuple[str, str]:
    """The structures and dose files to review: as given, or predicted into ``workdir`` (the dose from
    --structures, or from the structures completed from --scribbles)."""
    if args.dose is not None:
        if args.scribbles is not None:
            raise InputError("--dose goes with --structures; from --scribbles the dose is predicted")
        return args.structures, args.dose
    from sparsert.completion import completer
    from sparsert.dose.predict import default_model, load_dose_model, predict_dose
    from sparsert.io.dose_io import write_dose
    from sparsert.io.segmentation_io import read_structures, write_segmentation
    from sparsert.io.volume import read_image

    ct = read_image(args.ct)
    model = load_dose_model(args.model or default_model("scribble" if args.scribbles else "mask"), args.device)
    if args.scribbles is not None:
        structures = completer(args.completion, device=args.device)(ct, read_structures(args.scribbles, ct.geometry))
    else:
        structures = read_structures(args.structures, ct.geometry)
    overrides = read_roles(args.roles) if args.roles else None
    dose = predict_dose(model, ct, structures, None, overrides, parse_prescriptions(args.prescription) or None)
    structures_path = write_segmentation(structures, workdir / "structures.seg.nrrd", overwrite=True)
    return str(structures_path), str(write_dose(dose, workdir / "predicted_dose.nrrd", overwrite=True))


def roles_from_args(args: argparse.Namespace, names: Iterable[str]) -> dict[str, StructureRole]:
    """Roles of ``names``: guessed from the names, then --roles, then --prescription."""
    overrides = read_roles(args.roles) if args.roles else None
    return structure_roles(names, overrides, parse_prescriptions(args.prescription) or None)


def run(args: argparse.Namespace) -> int:
    writable(args.out, args.overwrite)
    from sparsert.mrml import HeadlessSlicer
    from sparsert.mrml.dose_scene import build_dose_scene, load_case, save_dose_scene

    with tempfile.TemporaryDirectory(prefix="sparsert-scene-") as workdir:
        structures, dose = prepare_inputs(args, Path(workdir))
        headless = HeadlessSlicer()
        nodes = load_case(headless.scene, args.ct, structures, dose, args.reference_dose)
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

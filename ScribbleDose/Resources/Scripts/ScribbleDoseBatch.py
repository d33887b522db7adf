"""ScribbleDose batch run: CT + structures + dose [+ reference dose] -> scene bundle, snapshots, DVH figure.

In Slicer::

    Slicer --no-main-window --python-script ScribbleDoseBatch.py --ct ct.nrrd \\
        --structures structures.seg.nrrd --dose dose.nrrd --out scene.mrb --snapshots snapshots

With plain Python and the slicer-core wheel, the same arguments::

    python ScribbleDoseBatch.py --ct ct.nrrd --structures structures.seg.nrrd --dose dose.nrrd --out scene.mrb

Arguments are those of ``sparsert scene``; the work goes through ScribbleDose's scene logic. Exits
with 0 on success and 1 with a one-line message when an input cannot be used (or, with
``--scribbles``, while no dose model exists).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import traceback
from pathlib import Path

# The module folder, which Slicer puts on sys.path, so that ScribbleDoseLib imports without Slicer too.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import slicer  # noqa: E402
from ScribbleDoseLib.logic import ScribbleDoseSceneLogic  # noqa: E402

from sparsert.cli.scene_cmd import (  # noqa: E402
    DESCRIPTION,
    add_scene_arguments,
    prepare_inputs,
    roles_from_args,
    summary,
)
from sparsert.errors import SparseRTError  # noqa: E402
from sparsert.mrml import HeadlessSlicer  # noqa: E402

PROG = "ScribbleDoseBatch"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_scene_arguments(parser)
    args = parser.parse_args(argv)
    in_slicer = hasattr(slicer, "app")
    # Outside the application a headless scene stands in for Slicer's; it must outlive the logic's work.
    headless = None if in_slicer else HeadlessSlicer()
    if in_slicer:
        logic = ScribbleDoseSceneLogic(slicer.mrmlScene, slicer.app.applicationLogic())
    else:
        logic = ScribbleDoseSceneLogic(headless.scene, headless.app_logic)
    try:
        with tempfile.TemporaryDirectory(prefix="ScribbleDoseBatch-") as workdir:
            structures, dose = prepare_inputs(args, Path(workdir))
            nodes = logic.loadCase(args.ct, structures, dose, args.reference_dose)
            segmentation = nodes["structures"].GetSegmentation()
            names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
            built = logic.showDose(
                nodes["ct"], nodes["structures"], nodes["dose"], nodes["reference"], roles_from_args(args, names)
            )
            written = logic.saveDoseScene(built, args.out, args.snapshots, args.overwrite)
    except SparseRTError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    print(summary(built, written))
    return 0


if __name__ == "__main__":
    try:
        status = main(sys.argv[1:])
    except SystemExit as exit_request:  # argparse: --help, or bad arguments
        status = exit_request.code or 0
    except Exception:  # anything unexpected still ends the run with a failure status
        traceback.print_exc()
        status = 1
    if hasattr(slicer, "app"):
        slicer.util.exit(status)  # the application keeps running after --python-script otherwise
    else:
        sys.exit(status)

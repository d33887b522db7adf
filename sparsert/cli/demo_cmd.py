"""``sparsert demo``: ScribbleDose's whole pipeline on the sample case shipped in Resources/."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsert.cli.common import add_device_option

SAMPLE_CASE = "OpenKBP-pt_201"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run scribbles -> structures -> dose -> DVH and metrics on the bundled sample case",
        description="Runs ScribbleDose's pipeline on the sample case in Resources/SampleData and writes every "
        "result to --out. A step whose model is not available stops the demo with a message naming it.",
    )
    parser.add_argument("--out", default="sparsert-demo", metavar="DIR", help="output folder (default: sparsert-demo)")
    parser.add_argument("--completion", default="scm", metavar="METHOD", help="scribble completion method (default: scm, the trained model)")
    parser.add_argument("--dose-model", default="dose-scribble", metavar="NAME_OR_PATH",
                        help="dose weights: registry name or .pt file (default: dose-scribble, trained on completed scribbles)")
    add_device_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sparsert.completion import completer
    from sparsert.dose.predict import load_dose_model, predict_dose
    from sparsert.data.case_folder import read_case_folder
    from sparsert.errors import MissingComponentError
    from sparsert.io.segmentation_io import read_segmentation
    from sparsert.pipeline import PipelineInputs, run_scribble_dose
    from sparsert.resources import sample_data_dir

    folder = sample_data_dir() / SAMPLE_CASE
    case = read_case_folder(folder)
    inputs = PipelineInputs(
        ct=case.images["ct"],
        scribbles=read_segmentation(folder / "scribbles.seg.nrrd"),
        reference_structures=case.structures,
        reference_dose=case.dose,
        possible_dose_mask=case.possible_dose_mask,
    )
    complete = completer(args.completion, device=args.device)

    def predict(ct, structures, body):
        return predict_dose(load_dose_model(args.dose_model, args.device), ct, structures, body)

    out = Path(args.out)
    try:
        result = run_scribble_dose(inputs, out, complete, predict, on_step=lambda s: print(f"[demo] {s}", file=sys.stderr))
    except MissingComponentError as exc:
        print(f"[demo] stopped: {exc}", file=sys.stderr)
        return 1
    finally:
        _report(out)
    return 0 if result else 1


def _report(out: Path) -> None:
    if out.is_dir():
        files = sorted(p.name for p in out.iterdir())
        print(f"[demo] outputs in {out}: {', '.join(files) or 'none'}", file=sys.stderr)

"""Evaluate completion methods on cases with dense structures, from simulated sparse scribbles.

For each case: simulate scribbles at the sparse setting (about every second slice holding a
structure, single-voxel-wide lines, seeded), complete them with a method, and score each structure
with Dice against the dense truth; the time of the completion is recorded per case. Images are
converted to Hounsfield units first (OpenKBP stores HU + 1024), so windows are given in HU.

``python -m sparsert.completion.evaluate CASE_FOLDER... --methods growcut randomwalker``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsert.completion import METHODS, CompletedSegmentation, get_method
from sparsert.data.case_folder import read_case_folder
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.metrics.segmentation import dice
from sparsert.preprocessing.ct import ct_to_hu
from sparsert.scribbles import scribble_stats, simulate_scribbles

SOFT_TISSUE_HU = (-160.0, 240.0)
# Options each method is evaluated with unless told otherwise: the random walker gains from a
# soft-tissue window (its edge weights are relative to the image spread), grow-cut does not
# (checked on OpenKBP validation cases), so it runs on raw HU as Slicer's effect does.
DEFAULT_OPTIONS: dict[str, dict] = {"randomwalker": {"window": SOFT_TISSUE_HU}}


@dataclass
class CaseResult:
    case_id: str
    method: str
    seconds: float  # completion only, not the scribble simulation
    dice: dict[str, float]  # per structure; 0.0 when the method returned nothing for it
    coverage: dict[str, float]  # fraction of each structure's voxels scribbled
    warnings: list[str] = field(default_factory=list)


def evaluate_case(
    case_id: str,
    image: Volume,
    structures: Segmentation,
    method: str,
    *,
    seed: int = 0,
    slice_fraction: float = 0.5,
    body_mask: np.ndarray | None = None,
    **options,
) -> CaseResult:
    """Scribble ``structures`` (seeded; background mostly inside ``body_mask`` when given), complete
    with ``method`` (``options`` passed on), and score Dice per non-empty structure."""
    complete = get_method(method)
    present = Segmentation(structures.geometry, [s for s in structures.segments if s.mask.any()])
    scribbles = simulate_scribbles(
        present, slice_fraction=slice_fraction, style="line", line_width_vox=1, body_mask=body_mask, seed=seed
    )
    start = time.perf_counter()
    completed = complete(image, scribbles, **options)
    seconds = time.perf_counter() - start
    scores = {}
    for seg in present.segments:
        found = completed.find(seg.name)
        scores[seg.name] = dice(found.mask, seg.mask) if found is not None else 0.0
    coverage = {name: s.coverage for name, s in scribble_stats(scribbles, present).items()}
    warnings = list(completed.warnings) if isinstance(completed, CompletedSegmentation) else []
    return CaseResult(case_id, method, seconds, scores, coverage, warnings)


def evaluate_folders(
    folders: Sequence[str | Path], methods: Sequence[str], *, seed: int = 0, options: dict[str, dict] | None = None
) -> list[CaseResult]:
    """Every method on every case folder (see :mod:`sparsert.data.case_folder`); same scribbles for all methods.

    ``options`` maps a method to its options, replacing its :data:`DEFAULT_OPTIONS`. The
    possible-dose mask, when the case has one, stands in for the body (as in SCM training).
    """
    options = {**DEFAULT_OPTIONS, **(options or {})}
    results = []
    for folder in folders:
        case = read_case_folder(folder)
        if case.structures is None:
            raise InputError(f"{folder}: case has no structures to evaluate against")
        ct = case.images[case.reference_name]
        image = ct.with_array(ct_to_hu(ct.array))
        body = case.possible_dose_mask.array if case.possible_dose_mask is not None else None
        for method in methods:
            results.append(
                evaluate_case(
                    case.case_id, image, case.structures, method, seed=seed, body_mask=body, **options.get(method, {})
                )
            )
    return results


def summarize(results: Sequence[CaseResult]) -> dict[str, dict[str, float]]:
    """Per method: mean Dice per structure (over cases holding it), "mean" over all scores, "seconds" per case."""
    summary: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r.method for r in results):
        mine = [r for r in results if r.method == method]
        per_structure: dict[str, list[float]] = {}
        for r in mine:
            for name, value in r.dice.items():
                per_structure.setdefault(name, []).append(value)
        row = {name: float(np.mean(values)) for name, values in sorted(per_structure.items())}
        row["mean"] = float(np.mean([v for values in per_structure.values() for v in values]))
        row["seconds"] = float(np.mean([r.seconds for r in mine]))
        summary[method] = row
    return summary


def format_summary(summary: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per structure, one column per method."""
    methods = list(summary)
    rows = list(dict.fromkeys(k for row in summary.values() for k in row if k not in ("mean", "seconds")))
    lines = ["structure".ljust(14) + "".join(m.rjust(14) for m in methods)]
    for name in [*rows, "mean", "seconds"]:
        cells = "".join(
            (f"{summary[m][name]:.3f}" if name in summary[m] else "-").rjust(14) for m in methods
        )
        lines.append(name.ljust(14) + cells)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", type=Path, help="case folders with ct and structures/")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--window", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="intensity window in HU for every method (default: per method)",
    )
    args = parser.parse_args(argv)
    options = {m: {"window": tuple(args.window)} for m in args.methods} if args.window else None
    results = evaluate_folders(args.cases, args.methods, seed=args.seed, options=options)
    for r in results:
        print(f"{r.case_id} {r.method}: mean Dice {np.mean(list(r.dice.values())):.3f}, {r.seconds:.1f} s")
    print(format_summary(summarize(results)))


if __name__ == "__main__":
    main()

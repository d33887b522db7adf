#!/usr/bin/env python3
"""Make a model file from others (how some shipped models were assembled; see their cards).

    scripts/combine_models.py average OUT.pt A.pt B.pt [C.pt ...]   # uniform weight average, one network
    scripts/combine_models.py refiner OUT.pt BASE.pt REFINED.pt     # BASE's dose network + REFINED's refiner

OUT is then shipped with scripts/publish_model.py. An existing OUT is not overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsert.errors import InputError  # noqa: E402
from sparsert.models.combine import average_weights, with_refiner  # noqa: E402
from sparsert.models.model_file import read_model_file  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operation", choices=("average", "refiner"))
    parser.add_argument("out", type=Path)
    parser.add_argument("inputs", nargs="+", type=Path)
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; choose another output file")
    try:
        states = [read_model_file(path) for path in args.inputs]
        if args.operation == "average":
            combined = average_weights(states, [str(path) for path in args.inputs])
        else:
            if len(states) != 2:
                parser.error("refiner takes two model files: BASE.pt REFINED.pt")
            combined = with_refiner(states[0], states[1], str(args.inputs[1]))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.save(combined, args.out)
    made = (f"the weight average of {len(states)} model files" if args.operation == "average"
            else f"{args.inputs[0]} with the refiner of {args.inputs[1]}")
    print(f"{args.out} written: {made}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

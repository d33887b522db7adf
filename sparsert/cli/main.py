"""The ``sparsert`` command line: subcommands for headless work and batch runs."""

from __future__ import annotations

import argparse
import sys

from sparsert import __version__
from sparsert.allocator import keep_freed_memory
from sparsert.cli import (
    bench_cmd, complete_cmd, crossmodal_cmd, data_cmd, demo_cmd, dicom_cmd, dose_cmd, evaluate_cmd, refine_cmd, scene_cmd,
    train_cmd,
)
from sparsert.errors import SparseRTError

SUBCOMMANDS = (
    demo_cmd, complete_cmd, dose_cmd, crossmodal_cmd, data_cmd, dicom_cmd, evaluate_cmd, refine_cmd, scene_cmd, train_cmd,
    bench_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparsert",
        description="SparseRT: radiotherapy planning from sparse annotations (scribbles and clicks).",
    )
    parser.add_argument("--version", action="version", version=f"sparsert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return int(args.run(args) or 0)
    except SparseRTError as exc:
        print(f"sparsert {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sparsert {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

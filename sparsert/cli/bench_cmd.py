"""``sparsert bench``: time and peak memory per case of the inference workloads, written as JSON and Markdown."""

from __future__ import annotations

import argparse
import sys

from sparsert.cli.common import add_device_option, add_overwrite_option, add_precision_option, parse_key_values
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.io.output import writable

# The names of sparsert.benchmarks.workloads.WORKLOADS and MODEL_KINDS (listed here so that the help
# needs no torch).
MODEL_KIND_NAMES = ("scm", "dose", "dose-scribble", "icr", "crossmodal")
WORKLOAD_NAMES = (
    "completion-scm", "completion-scm-single-pass", "completion-growcut", "completion-randomwalker", "dose-mask",
    "dose-scribble", "interactive", "crossmodal",
)
FAMILY_DATA = {
    "completion": "the shared OpenKBP NIfTI validation cases",
    "dose": "the shared OpenKBP NIfTI validation cases",
    "interactive": "the shared soft-tissue sarcoma cases",
    "crossmodal": "the shared soft-tissue sarcoma cases",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench",
        help="time and peak memory per case of completion, dose, click refinement and cross-modal segmentation",
        description="Each workload runs in a fresh process: its models are loaded once (timed apart), then each case "
        "is timed and its peak resident memory recorded. Workloads whose model weights or data are not available are "
        "reported as skipped. Writes OUT/bench.json (machine details, settings, per-case figures) and OUT/bench.md. "
        "Run it on an otherwise idle machine.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for bench.json and bench.md")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOAD_NAMES, metavar="NAME",
                        help=f"what to measure: {', '.join(WORKLOAD_NAMES)} (default: all)")
    for family, default in FAMILY_DATA.items():
        parser.add_argument(
            f"--{family}-data", metavar="DIR", help=f"data set of the {family} workloads ({DATA_HELP}; default: {default})"
        )
    parser.add_argument("--model", action="append", default=[], metavar="KIND=NAME_OR_PATH",
                        help=f"weights of a model kind ({', '.join(MODEL_KIND_NAMES)}): registry name or .pt file, "
                        "e.g. dose=runs/dose/best.pt (default: the registered models)")
    parser.add_argument("--max-cases", type=int, metavar="N", help="first N cases of each data set (default: all)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's choice: the cores)")
    parser.add_argument("--seed", type=int, default=0, help="scribble simulation seed (default 0)")
    parser.add_argument("--clicks", type=int, default=5, help="simulated clicks per interactive case (default 5)")
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_bench_cmd)


def run_bench_cmd(args: argparse.Namespace) -> int:
    from sparsert.benchmarks.report import report_paths, write_report
    from sparsert.benchmarks.suite import BenchSettings, run_bench

    for path in report_paths(args.out):
        writable(path, args.overwrite)
    settings = BenchSettings(
        workloads=args.workloads,
        data={family: getattr(args, f"{family}_data") for family in FAMILY_DATA if getattr(args, f"{family}_data")},
        models=parse_key_values(args.model, "--model", str, "KIND=NAME_OR_PATH, e.g. dose=runs/dose/best.pt"),
        max_cases=args.max_cases, device=args.device, threads=args.threads, seed=args.seed, clicks=args.clicks,
        precision=args.precision,
    )
    result = run_bench(settings, on_workload=_print_workload)
    json_path, md_path = write_report(result, args.out, overwrite=args.overwrite)
    failed = [w["name"] for w in result["workloads"] if w["status"] == "failed"]
    print(f"wrote {json_path} and {md_path}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _print_workload(entry: dict) -> None:
    """One line per workload on stderr as it finishes."""
    if entry["status"] == "measured":
        s = entry["seconds"]
        peak = f", peak {entry['peak_rss_mb']:.0f} MB" if entry["peak_rss_mb"] is not None else ""
        line = f"{entry['cases']} case(s), median {s['median']:.3f} s per case (max {s['max']:.3f}){peak}"
    else:
        line = f"{entry['status']}: {entry['reason']}"
    print(f"bench: {entry['name']}: {line}", file=sys.stderr)

"""The results of a benchmark run: ``bench.json`` (everything) and ``bench.md`` (readable tables)."""

from __future__ import annotations

from pathlib import Path

from sparsert.io.json_io import write_json
from sparsert.io.output import writable

NOTES = (
    "Seconds per case: wall-clock time of the steps a user waits for, summed over a case's steps; "
    "loading the models is timed apart, reading files and simulating scribbles or clicks are not timed. "
    "The first case includes one-time costs (lazy imports, warm-up), seen in the maximum. "
    "Peak RSS: the measuring process's peak resident memory during a case (the largest over the cases), "
    "models and inputs included; each workload runs in a fresh process."
)
TRAINING = (
    "Training throughput (samples/s of each model at 1 process and at 2 DDP processes) is measured apart, by "
    "`benchmarks/training_throughput.py` (`training_throughput.md` beside this file): it trains rather than infers."
)


def report_paths(out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    return out_dir / "bench.json", out_dir / "bench.md"


def write_report(result: dict, out_dir: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """``bench.json`` and ``bench.md`` in ``out_dir``; refuses to replace them unless ``overwrite``."""
    json_path, md_path = (writable(p, overwrite) for p in report_paths(out_dir))
    write_json(result, json_path, overwrite=overwrite)
    md_path.write_text(markdown(result))
    return json_path, md_path


def markdown(result: dict) -> str:
    m, settings = result["machine"], result["settings"]
    gpu = f", GPU {m['gpu']}" if m["gpu"] else ""
    load = ", ".join(f"{v:g}" for v in m["load_average"]) if m["load_average"] else "unknown"
    cases = f"at most {settings['max_cases']}" if settings["max_cases"] else "all"
    lines = [
        "# SparseRT benchmark",
        "",
        f"Run {m['date_utc']} with sparsert {m['sparsert']} (commit {m['commit'] or 'unknown'}) on {m['cpu']}, "
        f"{m['usable_cores']} of {m['logical_cores']} cores usable, {_value(m['memory_gb'])} GB memory{gpu}; "
        f"{m['os']}, Python {m['python']}, torch {m['torch']} (threads: {m['torch_threads']}), device {m['device']}. "
        f"Load average at the start: {load}.",
        "",
        f"Data: {_data_line(result['workloads'])}. Cases per workload: {cases}; scribble seed {settings['seed']}; "
        f"up to {settings['clicks']} simulated clicks per interactive case; completion, dose and cross-modal networks in "
        f"{settings.get('precision', 'float32')}.",
        "",
        NOTES,
        "",
    ]
    measured = [w for w in result["workloads"] if w["status"] == "measured"]
    gpu_column = any("peak_gpu_mb" in w for w in measured)
    header = ["workload", "what", "cases", "median s/case", "mean s/case", "max s/case", "model load s", "peak RSS MB"]
    lines += _table(header + (["peak GPU MB"] if gpu_column else []), [
        [w["name"], w["description"], str(w["cases"]), _value(w["seconds"]["median"]), _value(w["seconds"]["mean"]),
         _value(w["seconds"]["max"]), _value(w["model_load_s"]), _value(w["peak_rss_mb"])]
        + ([_value(w.get("peak_gpu_mb"))] if gpu_column else [])
        for w in measured
    ])
    steps = [(w["name"], step, s) for w in measured if len(w["steps"]) > 1 for step, s in w["steps"].items()]
    if steps:
        lines += ["", "Steps (seconds each):", ""]
        lines += _table(["workload", "step", "n", "median s", "mean s", "max s"], [
            [name, step, str(s["n"]), _value(s["median"]), _value(s["mean"]), _value(s["max"])]
            for name, step, s in steps
        ])
    skipped = [f"- {w['name']} ({w['status']}): {w['reason']}" for w in result["workloads"] if w["status"] != "measured"]
    if skipped:
        lines += ["", "## Not measured", "", *skipped]
    lines += ["", TRAINING, ""]
    return "\n".join(lines)


def _data_line(workloads: list[dict]) -> str:
    """Each data set with the workloads that ran on it."""
    by_data: dict[str, list[str]] = {}
    for w in workloads:
        by_data.setdefault(w["data"], []).append(w["name"])
    return "; ".join(f"{', '.join(names)}: `{data}`" for data, names in by_data.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _value(v: float | None) -> str:
    """A figure with about three significant digits (``-`` when unknown)."""
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"

"""Running the benchmark: models and data resolved per workload, what is missing reported as skipped.

A workload whose model weights are not available (:class:`MissingComponentError`, e.g. a model
not registered or not downloaded, or an optional package missing) or whose data set cannot be
opened is skipped with the reason; an error of the workload (bad input, out of memory) marks it
failed, and the others still run. Each measured workload runs in its own fresh process
(:func:`~sparsert.benchmarks.measure.run_isolated`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch

from sparsert.benchmarks.machine import machine_info
from sparsert.benchmarks.measure import MeasurementError, run_isolated, seconds_summary
from sparsert.benchmarks.workloads import MODEL_KINDS, WORKLOADS, Job, measure
from sparsert.data.datasets import open_dataset
from sparsert.device import resolve_device, resolve_precision
from sparsert.errors import InputError, MissingComponentError
from sparsert.models.registry import resolve_weights
from sparsert.resources import shared_data_dir


def default_data() -> dict[str, str]:
    """Each workload family's data set in the shared data: OpenKBP validation cases, sarcoma cases."""
    shared = shared_data_dir()
    openkbp, sts = str(shared / "openkbp-nifti" / "validation"), f"sts:{shared / 'sts'}"
    return {"completion": openkbp, "dose": openkbp, "interactive": sts, "crossmodal": sts}


@dataclass
class BenchSettings:
    workloads: list[str] | None = None  # names in WORKLOADS; None: all
    data: dict[str, str] = field(default_factory=dict)  # family -> data set, over default_data()
    models: dict[str, str] = field(default_factory=dict)  # model kind -> name or file, over the defaults
    max_cases: int | None = None
    device: str = "auto"
    threads: int | None = None  # torch threads (None: torch's own choice)
    seed: int = 0  # scribble simulation
    clicks: int = 5  # simulated clicks per interactive case
    precision: str = "auto"  # of the completion, dose and cross-modal networks; the report gives the resolved one


def run_bench(settings: BenchSettings, on_workload: Callable[[dict], None] | None = None) -> dict:
    """Every selected workload measured (or skipped / failed, with the reason), with the machine's
    details and the settings in effect."""
    names = settings.workloads or list(WORKLOADS)
    for what, given, known in (("workload", names, WORKLOADS), ("model kind", settings.models, MODEL_KINDS),
                               ("data family", settings.data, default_data())):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise InputError(f"unknown {what}(s) {', '.join(unknown)} (known: {', '.join(known)})")
    for what, value in (("max_cases", settings.max_cases), ("threads", settings.threads), ("clicks", settings.clicks)):
        if value is not None and value < 1:
            raise InputError(f"{what} must be at least 1, got {value}")
    device = resolve_device(settings.device)
    threads = settings.threads or torch.get_num_threads()
    precision = str(resolve_precision(settings.precision, device)).removeprefix("torch.")
    effective = replace(
        settings, workloads=names, threads=threads, precision=precision, data={**default_data(), **settings.data},
        models={kind: settings.models.get(kind, k.default) for kind, k in MODEL_KINDS.items()},
    )
    machine = machine_info(device, threads)
    entries = []
    for name in names:
        entry = _run_workload(name, effective, str(device))
        entries.append(entry)
        if on_workload:
            on_workload(entry)
    return {"machine": machine, "settings": asdict(effective), "workloads": entries}


def _run_workload(name: str, settings: BenchSettings, device: str) -> dict:
    workload = WORKLOADS[name]
    data = settings.data[workload.family]
    entry = {"name": name, "description": workload.description, "data": data, "status": "skipped", "reason": None}
    try:
        weights = {
            kind: str(resolve_weights(settings.models[kind], task=MODEL_KINDS[kind].task)[0])
            for kind in workload.models
        }
    except MissingComponentError as exc:
        return {**entry, "reason": f"not available: {exc}"}
    try:
        case_ids = open_dataset(data).case_ids()[: settings.max_cases]
    except InputError as exc:
        return {**entry, "reason": f"not available: {exc}"}
    job = Job(name, data, tuple(case_ids), weights, device, settings.threads, settings.seed, settings.clicks,
              settings.precision)
    try:
        # measure's module, run as a program, measures the job.
        measured = run_isolated(measure.__module__, asdict(job))
    except MissingComponentError as exc:
        return {**entry, "reason": f"not available: {exc}"}
    except MeasurementError as exc:
        return {**entry, "status": "failed", "reason": str(exc)}
    return {**entry, "status": "measured", "models": weights, **summarize(measured)}


def summarize(measured: dict) -> dict:
    """The per-case records of :func:`~sparsert.benchmarks.workloads.measure` with their summary:
    seconds per case (all steps), per step, model load, and peak memory over the cases."""
    cases = measured["cases"]
    steps: dict[str, list[float]] = {}
    for case in cases:
        for step, values in case["steps"].items():
            steps.setdefault(step, []).extend(values)
    summary = {
        "cases": len(cases),
        "model_load_s": measured["model_load_s"],
        "seconds": seconds_summary([c["seconds"] for c in cases]),
        "steps": {step: seconds_summary(values) for step, values in steps.items()},
        "rss_after_load_mb": measured["rss_after_load_mb"],
        "peak_rss_mb": max((c["peak_rss_mb"] for c in cases if c["peak_rss_mb"] is not None), default=None),
        "peak_rss_per_case": measured["peak_rss_per_case"],
    }
    if any("peak_gpu_mb" in c for c in cases):
        summary["peak_gpu_mb"] = max(c["peak_gpu_mb"] for c in cases)
    return {**summary, "per_case": cases}

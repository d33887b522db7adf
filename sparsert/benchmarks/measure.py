"""Measuring tools: a fresh process per workload, wall time per step, peak resident memory per case.

A process's peak resident set size only ever grows, so one workload per fresh process keeps
another workload's models and imports out of its peak. Within the process, Linux lets the peak
(``VmHWM``) be reset before each case; elsewhere the peak covers the process up to that case.
Memory freed by one case is not always handed back to the system, so a per-case peak is at least
the resident size left by earlier cases; the workload's peak (the largest) is the robust figure.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from sparsert.errors import MissingComponentError, SparseRTError
from sparsert.io.json_io import write_json

_PROC_SELF = Path("/proc/self")


class MeasurementError(SparseRTError):
    """A measured workload failed (bad input, out of memory, or its process died)."""


def run_isolated(module: str, job: dict) -> dict:
    """The result of ``python -m module JOB.json RESULT.json`` run in a fresh process (see :func:`serve`).

    A process of our own rather than a multiprocessing worker, which would re-run the caller's main
    script. Raises :class:`MissingComponentError` when the workload needs something not available,
    :class:`MeasurementError` when it failed.
    """
    with tempfile.TemporaryDirectory(prefix="sparsert-bench-") as folder:
        job_path, result_path = Path(folder, "job.json"), Path(folder, "result.json")
        job_path.write_text(json.dumps(job))
        # The package's own folder first, for hosts (Slicer) that put it on sys.path at run time only.
        paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        done = subprocess.run([sys.executable, "-m", module, str(job_path), str(result_path)], env=env)
        if not result_path.is_file():
            raise MeasurementError(
                f"the measuring process ended with exit code {done.returncode} and no result "
                "(killed, e.g. for lack of memory, or see the messages above)"
            )
        result = json.loads(result_path.read_text())
    if "error" in result:
        error = MissingComponentError if result["error"]["missing"] else MeasurementError
        raise error(result["error"]["message"])
    return result


def serve(measure: Callable[[dict], dict], argv: list[str]) -> int:
    """The measuring process's side of :func:`run_isolated`: ``measure(job)`` for the job in
    ``argv[0]``, its result (or the error a user can act on) written to ``argv[1]``."""
    job_path, result_path = argv
    try:
        result = measure(json.loads(Path(job_path).read_text()))
    except MissingComponentError as exc:
        result = {"error": {"missing": True, "message": str(exc)}}
    except (SparseRTError, MemoryError, torch.cuda.OutOfMemoryError) as exc:
        result = {"error": {"missing": False, "message": str(exc) or type(exc).__name__}}
    write_json(result, result_path, overwrite=True)
    return 0


def _proc_status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (kB) in MiB; None where there is no /proc."""
    try:
        text = (_PROC_SELF / "status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else None


def current_rss_mb() -> float | None:
    """Resident memory of this process now (MiB); None off Linux."""
    return _proc_status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux: reset the kernel's high-water mark); False where the
    platform cannot, the peak then covering the process so far."""
    try:
        (_PROC_SELF / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float | None:
    """Peak resident memory (MiB) since :func:`reset_peak_rss`, or of the process where it cannot reset."""
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
    except ImportError:  # Windows
        return None
    # ru_maxrss is in bytes on macOS (kilobytes on Linux, which reads /proc above).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Stopwatch:
    """Wall-clock seconds of named steps, a list per step (a step may repeat, e.g. clicks)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Record a step timed elsewhere (e.g. the latency a session reports)."""
        self.seconds.setdefault(name, []).append(seconds)

    @property
    def total(self) -> float:
        return sum(sum(values) for values in self.seconds.values())


def seconds_summary(values: list[float]) -> dict[str, float | int]:
    """Count, mean, median and maximum of timings."""
    return {"n": len(values), "mean": statistics.fmean(values), "median": statistics.median(values), "max": max(values)}

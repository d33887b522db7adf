"""Running one job over a cohort of cases: skip done cases, worker processes, torchrun shards, a summary.

A job (:class:`CohortJob`) names the files a done case has and loads its models once per process,
returning the per-case function. :func:`run` skips cases whose files all exist (unless the job
overwrites), runs the rest in this process or in ``workers`` spawned processes, and records each
case as done, skipped or failed: a failing case is reported on stderr and the cohort goes on.
Under ``torchrun`` (RANK and WORLD_SIZE set) rank r takes cases r, r + W, ... and writes its own
summary part; nothing is merged. :func:`write_summary` writes ``summary.csv`` and the job's JSON.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from sparsert.device import resolve_device
from sparsert.errors import InputError, SparseRTError
from sparsert.io.json_io import write_csv, write_json
from sparsert.training.distributed import rank, world_size

CaseFunction = Callable[[str], list[Path]]


class CohortJob(Protocol):
    """What :func:`run` needs of a job; it must pickle, as worker processes receive it."""

    out_dir: Path
    overwrite: bool

    def outputs(self, case_id: str) -> list[Path]:
        """The files a done case has."""

    def load(self) -> CaseFunction:
        """Load the models (once per process) and return ``case_id -> files written``, raising on failure."""


@dataclass
class CaseResult:
    case_id: str
    status: str  # done, skipped (its outputs existed) or failed
    seconds: float = 0.0  # wall time of the case: reading, predicting, writing
    peak_rss_mb: float = 0.0  # the peak resident memory of the process that ran it, so far
    files: list[str] = field(default_factory=list)
    error: str = ""


def output_stem(case_id: str) -> str:
    """The output file stem of a case: ``validation/pt_1`` -> ``pt_1``."""
    return case_id.split("/")[-1]


def shard(case_ids: list[str]) -> list[str]:
    """This torchrun rank's share of the cases (all of them in a plain run)."""
    return case_ids[rank()::world_size()]


def rank_device(spec: str) -> str:
    """The device of this rank: under torchrun a GPU is the one numbered LOCAL_RANK, as in training."""
    if world_size() > 1 and resolve_device(spec).type == "cuda":
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return spec


def run(
    job: CohortJob,
    case_ids: list[str],
    workers: int = 1,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[CaseResult]:
    """This rank's cases run by ``job``, in case order; ``progress(done, total, case_id)`` after each.

    With one worker the cases run in this process and a model that fails to load stops the run;
    with more, each spawned worker loads the models once and uses an equal share of this process's
    torch threads, and a model that fails to load fails that worker's cases.
    """
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if job.out_dir.exists() and not job.out_dir.is_dir():
        raise InputError(f"{job.out_dir}: not a folder (a cohort's outputs go to a folder)")
    job.out_dir.mkdir(parents=True, exist_ok=True)
    mine = shard(case_ids)
    results: dict[str, CaseResult] = {}

    def record(result: CaseResult) -> None:
        results[result.case_id] = result
        if result.status == "failed":
            print(f"sparsert: case {result.case_id} failed: {result.error}", file=sys.stderr)
        if progress:
            progress(len(results), len(mine), result.case_id)

    todo = []
    for case_id in mine:
        outputs = job.outputs(case_id)
        if not job.overwrite and all(path.exists() for path in outputs):
            record(CaseResult(case_id, "skipped", files=[str(path) for path in outputs]))
        else:
            todo.append(case_id)
    workers = min(workers, len(todo))
    if workers == 1:
        case_function = job.load()
        for case_id in todo:
            record(_run_case(case_function, case_id))
    elif workers > 1:
        # This process's threads (the cores, or OMP_NUM_THREADS) shared out, so workers do not oversubscribe them.
        threads = max(1, torch.get_num_threads() // workers)
        # Spawned, not forked: CUDA and torch's thread pools do not survive a fork.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job, threads))
        with pool:
            futures = {pool.submit(_run_in_worker, case_id): case_id for case_id in todo}
            for future in as_completed(futures):
                try:
                    record(future.result())
                except Exception as exc:  # the worker died (killed, out of memory): the pool is gone
                    record(CaseResult(futures[future], "failed", error=f"worker process died ({_message(exc)})"))
    return [results[case_id] for case_id in mine]


def write_summary(results: list[CaseResult], job: CohortJob, json_name: str, info: dict) -> int:
    """``summary.csv`` (one row per case) and ``json_name`` (``info``, counts, seconds per done case,
    peak memory) in the job's folder, one line on stdout; 1 when a case failed, else 0.

    Under torchrun each rank writes ``summary.rank<r>.csv`` and ``<json stem>.rank<r>.json``.
    """
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    done = {r.case_id: round(r.seconds, 3) for r in results if r.status == "done"}
    peak = max((r.peak_rss_mb for r in results), default=0.0)
    rows = [{**asdict(r), "seconds": round(r.seconds, 3), "peak_rss_mb": round(r.peak_rss_mb, 1),
             "files": ";".join(r.files)} for r in results]
    table = write_csv(rows, job.out_dir / _part("summary.csv"), overwrite=True)  # the summary of this run
    write_json({**info, "cases": len(results), **counts, "peak_rss_mb": round(peak, 1), "seconds": done,
                "rank": rank(), "world_size": world_size()},
               job.out_dir / _part(json_name), overwrite=True)
    mean = sum(done.values()) / len(done) if done else 0.0
    print(f"{counts['done']} done ({mean:.2f} s per case, peak {peak:.0f} MB), {counts['skipped']} skipped "
          f"(already done), {counts['failed']} failed -> {table}")
    return 1 if counts["failed"] else 0


def _part(name: str) -> str:
    if world_size() == 1:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.rank{rank()}{dot}{suffix}"


def _run_case(case_function: CaseFunction, case_id: str) -> CaseResult:
    start = time.perf_counter()
    try:
        files = case_function(case_id)
    except Exception as exc:  # any failure is this case's: the cohort goes on
        return CaseResult(case_id, "failed", time.perf_counter() - start, _peak_rss_mb(), error=_message(exc))
    return CaseResult(case_id, "done", time.perf_counter() - start, _peak_rss_mb(), [str(f) for f in files])


# A worker process's per-case function, or why its models did not load.
_worker_function: CaseFunction | Exception | None = None


def _start_worker(job: CohortJob, threads: int) -> None:
    global _worker_function
    torch.set_num_threads(threads)
    try:
        _worker_function = job.load()
    except Exception as exc:  # kept for this worker's cases: raising here would break the whole pool
        _worker_function = exc


def _run_in_worker(case_id: str) -> CaseResult:
    if isinstance(_worker_function, Exception):
        return CaseResult(case_id, "failed", error=f"loading the models: {_message(_worker_function)}")
    return _run_case(_worker_function, case_id)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _message(exc: Exception) -> str:
    """One line: the message of an error a user can act on, else the error's type too."""
    text = str(exc) if isinstance(exc, SparseRTError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())

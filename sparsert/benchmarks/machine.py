"""The machine and software that benchmark figures belong to."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

from sparsert import __version__
from sparsert.cores import usable_cores


def machine_info(device: torch.device, threads: int) -> dict:
    """CPU, cores, memory, GPU, OS, Python, torch (and the threads it runs with), SparseRT version and
    commit, and the load average when the run started (figures from a busy machine are slower)."""
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "memory_gb": memory_gb(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": threads,
        "sparsert": __version__,
        "commit": git_commit(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo), else what the platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gb() -> float | None:
    """Total physical memory (Linux: /proc/meminfo); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def git_commit() -> str | None:
    """The commit of the checkout SparseRT runs from, ``-dirty`` with uncommitted changes to tracked
    files; None outside a checkout."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        # Without optional locks git status leaves the index alone (nothing is written).
        changed = _git("--no-optional-locks", "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if changed else "")


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()

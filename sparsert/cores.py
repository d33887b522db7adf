"""How many CPU cores this process may use."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on: a container or a task set may allow fewer than the machine has
    (``os.sched_getaffinity`` exists on Linux only; elsewhere all logical cores count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1

"""The C allocator's settings for SparseRT's own processes (the command line and its measuring processes).

Inference allocates and frees tensors of tens of megabytes many times per case. With glibc's defaults
most of them are fresh memory mappings, returned to the system when freed, so that every one is paid
again in page faults. Keeping freed memory in the heap for reuse removes that (on a 2-core virtual
machine, completion of the largest validation case 1.4-1.7 s -> 1.1 s, the same masks). Blocks above
glibc's largest mmap threshold (32 MB: a case's 11 dose channels are about 90 MB) come from the heap
too (glibc's malloc falls back to mmap only where the heap cannot grow): mapped afresh, such a block
sometimes took 0.3-0.9 s to fault in on a virtual machine that hands freed memory back to its host.
Hosts that embed the package (Slicer) keep their own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

# Every block comes from the heap (no mmap'd blocks at all), and this much free memory at the heap's top
# is kept rather than returned to the system.
TRIM_THRESHOLD_BYTES = 512 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks instead of unmapping them; False where the C library is not
    glibc (macOS, Windows, musl), whose allocators are left as they are."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (and mallopt's parameters)
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))

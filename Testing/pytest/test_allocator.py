"""The C allocator's settings for SparseRT's own processes."""

from __future__ import annotations

import ctypes
import platform
import sys

import pytest

from sparsert.allocator import keep_freed_memory

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
    )]


@glibc_only
def test_glibc_accepts_the_settings():
    assert keep_freed_memory() is True


@glibc_only
def test_a_block_larger_than_any_mmap_threshold_comes_from_the_heap():
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    keep_freed_memory()
    mapped_before = libc.mallinfo2().hblkhd
    block = libc.malloc(96 * 1024 * 1024)  # above glibc's largest mmap threshold (32 MB)
    try:
        assert block
        assert libc.mallinfo2().hblkhd == mapped_before
    finally:
        libc.free(block)

"""The C allocator's settings for SparseRT's own processes."""

from __future__ import annotations

import platform
import sys

import pytest

from sparsert.allocator import keep_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)
def test_glibc_accepts_the_settings():
    assert keep_freed_memory() is True

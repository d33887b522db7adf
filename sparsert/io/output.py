"""The one check every writer makes first: nothing the user has is replaced unless asked."""

from __future__ import annotations

from pathlib import Path

from sparsert.errors import InputError


def writable(path: str | Path, overwrite: bool) -> Path:
    """``path`` as a Path, checked before any work is done, with its folder created.

    An existing file is never replaced unless ``overwrite`` (the CLI's ``--overwrite``).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (refusing to overwrite; use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

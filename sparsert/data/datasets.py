"""Opening a data set folder: format detection and lazy case loading.

``open_dataset(spec)`` takes ``DIR`` (format detected) or ``FORMAT:DIR`` with FORMAT one of
:data:`FORMATS`. Cases are found at three places, first match wins:

- ``DIR`` is itself a case folder: a data set of that one case, named after the folder;
- ``DIR/<case>/``: one case per sub-folder (case id ``<case>``);
- ``DIR/<split>/<case>/``, e.g. ``train/`` and ``validation/``: all splits together, case ids
  ``<split>/<case>`` (conversion keeps this layout).

Folders of several formats under one ``DIR`` are an error unless a format is named; listing
cases reads no images (loading a case does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sparsert.data.case import Case
from sparsert.data.case_folder import is_case_folder, read_case_folder
from sparsert.data.openkbp_csv import is_openkbp_case, read_openkbp_case
from sparsert.data.sts import is_sts_case, read_sts_case
from sparsert.errors import InputError


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    is_case: Callable[[Path], bool]
    read: Callable[[Path], Case]


# Detection order: the most specific layouts first.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("openkbp", "OpenKBP challenge CSV (pt_N/ct.csv, dose.csv, voxel_dimensions.csv, <Structure>.csv)",
               is_openkbp_case, read_openkbp_case),
        Format("sts", "soft-tissue sarcoma (STS_0NN/CT_image.nii.gz, MR_T1_image.nii.gz, PET_image.nii.gz, "
               "*_mask.nii.gz)",
               is_sts_case, read_sts_case),
        Format("cases", "case folders (<case>/ct.<ext>, dose.<ext>, possible_dose_mask.<ext>, "
               "structures/<Name>.<ext> or structures.seg.nrrd)",
               is_case_folder, read_case_folder),
    )
}


class Dataset:
    """Cases of one format under ``root``; :meth:`load` reads one case's files."""

    def __init__(self, format: str, root: Path, folders: dict[str, Path]) -> None:
        self.format = format
        self.root = root
        self._folders = dict(sorted(folders.items(), key=lambda item: _natural_key(item[0])))

    def case_ids(self) -> list[str]:
        return list(self._folders)

    def folder(self, case_id: str) -> Path:
        if case_id not in self._folders:
            raise InputError(f"{self.root}: no case '{case_id}' (cases: {_short_list(self.case_ids())})")
        return self._folders[case_id]

    def load(self, case_id: str) -> Case:
        case = FORMATS[self.format].read(self.folder(case_id))
        case.case_id = case_id
        return case

    def __len__(self) -> int:
        return len(self._folders)

    def __iter__(self) -> Iterator[Case]:
        return (self.load(case_id) for case_id in self.case_ids())

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._folders

    def __repr__(self) -> str:
        return f"Dataset(format={self.format!r}, root={str(self.root)!r}, cases={len(self)})"


def open_dataset(spec: str | Path) -> Dataset:
    """The data set at ``DIR`` or ``FORMAT:DIR`` (see the module docstring)."""
    forced, root = _parse_spec(spec)
    if not root.exists():
        raise InputError(f"{root}: data folder not found")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (a data set is a folder of cases)")
    formats = [FORMATS[forced]] if forced else list(FORMATS.values())
    own = _format_of(root, formats)
    if own is not None:
        return Dataset(own, root, {root.name: root})
    found: dict[str, dict[str, Path]] = {}
    for child in _subfolders(root):
        fmt = _format_of(child, formats)
        if fmt is not None:
            found.setdefault(fmt, {})[child.name] = child
            continue
        for grandchild in _subfolders(child):
            fmt = _format_of(grandchild, formats)
            if fmt is not None:
                found.setdefault(fmt, {})[f"{child.name}/{grandchild.name}"] = grandchild
    if not found:
        expected = "; ".join(f"{f.name}: {f.description}" for f in formats)
        raise InputError(f"{root}: no cases found (formats: {expected})")
    if len(found) > 1:
        counts = ", ".join(f"{len(found[fmt])} {fmt}" for fmt in FORMATS if fmt in found)
        raise InputError(f"{root}: holds cases of several formats ({counts}); choose one as FORMAT:{root}")
    fmt, folders = next(iter(found.items()))
    return Dataset(fmt, root, folders)


def _parse_spec(spec: str | Path) -> tuple[str | None, Path]:
    text = str(spec)
    prefix, sep, rest = text.partition(":")
    # Only a known format name is a prefix, so that "C:\data" stays a path.
    if sep and prefix in FORMATS:
        return prefix, Path(rest)
    if sep and prefix.isidentifier() and len(prefix) > 1 and not Path(text).exists():
        raise InputError(f"{text}: unknown data format '{prefix}' (formats: {', '.join(FORMATS)})")
    return None, Path(text)


def _format_of(folder: Path, formats: list[Format]) -> str | None:
    return next((f.name for f in formats if f.is_case(folder)), None)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _natural_key(text: str) -> list:
    """Sort pt_2 before pt_10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _short_list(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "") if items else "none"

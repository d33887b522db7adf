"""Converting a data set to case folders, and summarising one (``sparsert data convert|inspect``).

Both return values and never print; a ``progress(done, total, case_id)`` callback reports progress.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from sparsert.data.case import Case
from sparsert.data.case_folder import write_case_folder
from sparsert.data.datasets import Dataset
from sparsert.errors import InputError
from sparsert.io.volume import Volume

Progress = Callable[[int, int, str], None]


def convert_dataset(
    dataset: Dataset, out_dir: str | Path, overwrite: bool = False, progress: Progress | None = None
) -> list[Path]:
    """Write every case as ``out_dir/<case_id>/`` (NRRD images, ``structures.seg.nrrd``); the case folders written.

    Without ``overwrite``, nothing is written when any target case folder already holds files.
    """
    out_dir = Path(out_dir)
    ids = dataset.case_ids()
    if not overwrite:
        taken = [out_dir / cid for cid in ids if (out_dir / cid).is_dir() and any((out_dir / cid).iterdir())]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise InputError(f"{taken[0]}{more}: already exist(s) (refusing to overwrite)")
    written = []
    for done, case_id in enumerate(ids, 1):
        written.append(write_case_folder(dataset.load(case_id), out_dir / case_id, overwrite=overwrite))
        if progress is not None:
            progress(done, len(ids), case_id)
    return written


def inspect_dataset(dataset: Dataset, progress: Progress | None = None) -> dict:
    """A JSON-ready summary: per case its images (size, spacing, value range), structures (voxels,
    cm^3), dose range, possible-dose voxels and warnings. A case that fails to load is listed with
    its ``error`` instead of stopping the inspection."""
    ids = dataset.case_ids()
    cases = []
    for done, case_id in enumerate(ids, 1):
        try:
            cases.append(summarize_case(dataset.load(case_id)))
        except InputError as exc:
            cases.append({"case_id": case_id, "error": str(exc)})
        if progress is not None:
            progress(done, len(ids), case_id)
    return {"format": dataset.format, "root": str(dataset.root), "cases": cases}


def summarize_case(case: Case) -> dict:
    voxel_cc = case.geometry.voxel_volume_mm3 / 1000.0
    structures = {}
    if case.structures is not None:
        for seg in case.structures.segments:
            count = int(np.count_nonzero(seg.mask))
            structures[seg.name] = {"voxels": count, "volume_cc": round(count * voxel_cc, 3)}
    mask = case.possible_dose_mask
    return {
        "case_id": case.case_id,
        "source": str(case.source) if case.source is not None else None,
        "reference": case.reference_name,
        "images": {name: _image_summary(volume) for name, volume in case.images.items()},
        "structures": structures,
        "dose": _image_summary(case.dose) if case.dose is not None else None,
        "possible_dose_mask_voxels": int(np.count_nonzero(mask.array)) if mask is not None else None,
        "warnings": list(case.warnings),
    }


def _image_summary(volume: Volume) -> dict:
    g = volume.geometry
    return {
        "size": list(g.size),
        "spacing": [round(s, 6) for s in g.spacing],
        "origin": [round(o, 4) for o in g.origin],
        "dtype": str(volume.array.dtype),
        "range": [float(volume.array.min()), float(volume.array.max())],
    }

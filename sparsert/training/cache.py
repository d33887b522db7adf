"""Preprocessed training volumes, cached on disk so that epochs never re-parse CSV or NIfTI.

One compressed ``.npz`` per case in a cache folder outside the repository, keyed by dataset path
and preprocessing version; a case is recomputed only when its entry is missing.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sparsert.completion.supervoxels import supervoxel_boundary_target
from sparsert.data.datasets import Dataset
from sparsert.io.volume import Geometry
from sparsert.preprocessing.ct import ct_channels

CACHE_VERSION = "1"


@dataclass
class CachedCase:
    case_id: str
    image: np.ndarray  # (C, D, H, W) float32 network channels
    names: list[str]
    masks: np.ndarray  # (K, D, H, W) bool
    body: np.ndarray  # (D, H, W) bool
    boundary: np.ndarray  # (D, H, W) float32 soft supervoxel boundary target
    spacing_kji: tuple[float, float, float]
    dose: np.ndarray | None = None  # (D, H, W) float32 Gy


def default_cache_root() -> Path:
    base = os.environ.get("SPARSERT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparsert"
    return Path(base) / "preprocessed"


def cache_dir_for(dataset: Dataset, root: Path | None = None) -> Path:
    key = hashlib.sha1(f"{dataset.format}:{Path(dataset.root).resolve()}:{CACHE_VERSION}".encode()).hexdigest()[:12]
    return (root or default_cache_root()) / f"{Path(dataset.root).name}-{key}"


def preprocess_case(dataset: Dataset, case_id: str) -> CachedCase:
    case = dataset.load(case_id)
    ct = case.images["ct"]
    geometry: Geometry = ct.geometry
    if case.structures is None:
        raise ValueError(f"case {case_id} has no structures")
    structures = case.structures.resampled(geometry)
    body = case.possible_dose_mask.array > 0 if case.possible_dose_mask is not None else np.ones(geometry.shape, bool)
    names = [s.name for s in structures.segments if s.mask.any()]
    masks = np.stack([structures[n].mask for n in names]) if names else np.zeros((0,) + geometry.shape, bool)
    return CachedCase(
        case_id=case_id,
        image=ct_channels(ct.array),
        names=names,
        masks=masks,
        body=body,
        boundary=supervoxel_boundary_target(ct.array, geometry.spacing_kji, body),
        spacing_kji=geometry.spacing_kji,
        dose=case.dose.array.astype(np.float32) if case.dose is not None else None,
    )


def _arrays(c: CachedCase) -> dict[str, np.ndarray]:
    return dict(
        image=c.image.astype(np.float16),
        names=np.array(c.names),
        masks=np.packbits(c.masks, axis=-1),
        shape=np.array(c.body.shape),
        body=np.packbits(c.body, axis=-1),
        boundary=c.boundary.astype(np.float16),
        spacing=np.array(c.spacing_kji),
        dose=c.dose if c.dose is not None else np.zeros(0, np.float32),
    )


def load_cached(path: Path) -> CachedCase:
    z = np.load(path)
    shape = tuple(int(s) for s in z["shape"])
    names = [str(n) for n in z["names"]]
    masks = np.unpackbits(z["masks"], axis=-1, count=shape[-1]).astype(bool) if names else np.zeros((0,) + shape, bool)
    return CachedCase(
        case_id=path.stem,
        image=z["image"].astype(np.float32),
        names=names,
        masks=masks.reshape((len(names),) + shape),
        body=np.unpackbits(z["body"], axis=-1, count=shape[-1]).astype(bool),
        boundary=z["boundary"].astype(np.float32),
        spacing_kji=tuple(float(s) for s in z["spacing"]),
        dose=z["dose"] if z["dose"].size else None,
    )


def entry_path(folder: Path, case_id: str) -> Path:
    """The cache file of a case (nested case ids such as ``train/pt_1`` flattened)."""
    return folder / f"{case_id.replace('/', '__')}.npz"


def get_or_make(
    folder: Path,
    case_ids: Sequence[str],
    make: Callable[[str], dict[str, np.ndarray]],
    on_case: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Cache entries of ``case_ids`` in ``folder``, computing the arrays of missing ones with ``make``.

    Entries are written atomically, so a half-written entry never looks complete. With ``workers``
    above 1, missing entries are computed in that many processes (``make`` must then pickle, e.g. a
    module-level function or a ``functools.partial`` of one).
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = [entry_path(folder, case_id) for case_id in case_ids]
    missing = [(case_id, path) for case_id, path in zip(case_ids, paths) if not path.exists()]
    computed: set[str] = set()
    if workers > 1 and len(missing) > 1:
        # Spawned, not forked: the parent may hold torch's thread pools.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(missing)), mp_context=context) as pool:
            for case_id in pool.map(partial(_write_entry, make), *zip(*missing)):
                computed.add(case_id)
                if on_case:
                    on_case(case_id)
    for case_id, path in zip(case_ids, paths):
        if case_id in computed:
            continue
        if not path.exists():
            _write_entry(make, case_id, path)
        if on_case:
            on_case(case_id)
    return paths


def _write_entry(make: Callable[[str], dict[str, np.ndarray]], case_id: str, path: Path) -> str:
    # One temporary name per process: two trainings sharing a cache may fill the same entry at once.
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **make(case_id))
    tmp.replace(path)
    return case_id


def _make_arrays(dataset: Dataset, case_id: str) -> dict[str, np.ndarray]:
    return _arrays(preprocess_case(dataset, case_id))


def cached_cases(
    dataset: Dataset,
    root: Path | None = None,
    case_ids: list[str] | None = None,
    on_case: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Paths of the cached entries of ``case_ids`` (all cases by default), computing missing ones
    (in ``workers`` processes)."""
    make = partial(_make_arrays, dataset)
    return get_or_make(cache_dir_for(dataset, root), case_ids or dataset.case_ids(), make, on_case, workers)

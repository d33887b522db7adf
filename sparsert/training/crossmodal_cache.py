"""Preprocessed CT/MR tumour cases for the cross-modal network, cached on disk.

Each case goes once through :func:`sparsert.crossmodal.preprocess.prepare_inputs` (the same code
inference uses) and is stored as one compressed ``.npz`` in a folder keyed by the data set and the
preprocessing settings, beside the other caches of :mod:`sparsert.training.cache`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sparsert.crossmodal.preprocess import PreprocessConfig, prepare_inputs
from sparsert.data.datasets import Dataset
from sparsert.data.sts import GTV
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, resample
from sparsert.training.cache import cache_dir_for, get_or_make

CACHE_VERSION = "1"


@dataclass
class CrossModalCase:
    case_id: str
    ct: np.ndarray  # (D, H, W) float32 network input
    mr: np.ndarray  # (D, H, W) float32 network input (the CT in CT-only mode)
    mr_valid: np.ndarray  # (D, H, W) bool
    body: np.ndarray  # (D, H, W) bool
    mask: np.ndarray  # (D, H, W) bool dense tumour
    geometry: Geometry  # the working grid


def crossmodal_cache_dir(dataset: Dataset, config: PreprocessConfig, root: Path | None = None) -> Path:
    settings = json.dumps(config.to_dict(), sort_keys=True) + CACHE_VERSION
    return cache_dir_for(dataset, root) / f"crossmodal-{hashlib.sha1(settings.encode()).hexdigest()[:10]}"


def preprocess_case(dataset: Dataset, case_id: str, config: PreprocessConfig) -> CrossModalCase:
    case = dataset.load(case_id)
    if case.structures is None:
        raise InputError(f"{case.source}: case has no tumour structure")
    ct = case.images.get("ct")
    mr = case.images.get("mr")
    if ct is None:
        raise InputError(f"{case.source}: case has no CT")
    if mr is None and not config.ct_only:
        raise InputError(f"{case.source}: case has no MR (train the ct-only variant for CT alone)")
    tumour = case.structures.resampled(ct.geometry)[GTV].mask
    if not tumour.any():
        raise InputError(f"{case.source}: structure '{GTV}' is empty")
    inputs = prepare_inputs(
        ct, mr, config, ct_name=str(case.files.get("ct", case_id)), mr_name=str(case.files.get("mr", case_id))
    )
    mask = resample(Volume(tumour.astype(np.float32), ct.geometry), inputs.geometry).array >= 0.5
    return CrossModalCase(case_id, inputs.ct, inputs.mr, inputs.mr_valid, inputs.body, mask, inputs.geometry)


def _arrays(c: CrossModalCase) -> dict[str, np.ndarray]:
    g = c.geometry
    return dict(
        ct=c.ct.astype(np.float16),
        mr=c.mr.astype(np.float16),
        flags=np.packbits(np.stack([c.mr_valid, c.body, c.mask]), axis=-1),
        shape=np.array(g.shape),
        spacing=np.array(g.spacing),
        origin=np.array(g.origin),
        direction=np.array(g.direction),
    )


def load_case(path: Path) -> CrossModalCase:
    z = np.load(path)
    shape = tuple(int(s) for s in z["shape"])
    flags = np.unpackbits(z["flags"], axis=-1, count=shape[-1]).astype(bool)
    geometry = Geometry(shape, tuple(z["spacing"].tolist()), tuple(z["origin"].tolist()), tuple(z["direction"].tolist()))
    case_id = path.stem.replace("__", "/")
    ct, mr = z["ct"].astype(np.float32), z["mr"].astype(np.float32)
    return CrossModalCase(case_id, ct, mr, flags[0], flags[1], flags[2], geometry)


def cached_cases(
    dataset: Dataset,
    config: PreprocessConfig,
    root: Path | None = None,
    case_ids: list[str] | None = None,
    on_case: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Paths of the cached entries of ``case_ids`` (all cases by default), computing missing ones
    (in ``workers`` processes)."""
    make = partial(_make_arrays, dataset, config=config)
    ids = case_ids if case_ids is not None else dataset.case_ids()
    return get_or_make(crossmodal_cache_dir(dataset, config, root), ids, make, on_case, workers)


def _make_arrays(dataset: Dataset, case_id: str, config: PreprocessConfig) -> dict[str, np.ndarray]:
    return _arrays(preprocess_case(dataset, case_id, config))

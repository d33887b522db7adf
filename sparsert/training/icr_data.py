"""Training data of the click-refinement models: fixed-size crops cached on disk, folds, augmentation.

Each case becomes a crop of ``size_kji`` voxels at ``spacing`` mm centred on the reference (CT)
image: every modality is normalised on its own grid and resampled onto the crop through physical
space (the sarcoma PET and MR lie on other grids than the CT), and the target structure is
resampled by nearest neighbour. The sarcoma CTs are already cut around the tumour, so the
centre of the CT is a crop centre that needs no knowledge of the tumour (the same at test time).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from monai.transforms import Compose, RandAffined, RandFlipd, RandScaleIntensityd, RandShiftIntensityd

from sparsert.data.datasets import Dataset
from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, resample
from sparsert.preprocessing.modalities import channels_on_grid
from sparsert.training.cache import default_cache_root, get_or_make

CACHE_VERSION = "icr-1"


@dataclass
class ICRDataConfig:
    modalities: tuple[str, ...] = ("ct", "pet")
    structure: str = "GTV_Mass"
    spacing: tuple[float, float, float] = (2.0, 2.0, 3.0)  # crop voxel size (i, j, k) mm
    size_kji: tuple[int, int, int] = (64, 96, 96)  # 192 mm cube at the default spacing


@dataclass
class ICRCase:
    case_id: str
    image: np.ndarray  # (C, D, H, W) float32 normalised channels
    truth: np.ndarray  # (D, H, W) bool
    geometry: Geometry  # the crop grid

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        return self.geometry.spacing_kji


def crop_geometry(reference: Geometry, config: ICRDataConfig) -> Geometry:
    """A ``size_kji`` grid at ``spacing`` with the reference's direction, centred on the reference's centre."""
    direction = np.asarray(reference.direction).reshape(3, 3)
    centre = (reference.ijk_to_lps() @ np.append((np.asarray(reference.size) - 1) / 2.0, 1.0))[:3]
    size_ijk = np.asarray(config.size_kji[::-1], dtype=float)
    spacing = np.asarray(config.spacing, dtype=float)
    origin = centre - direction @ (spacing * (size_ijk - 1) / 2.0)
    return Geometry(
        tuple(int(s) for s in config.size_kji), tuple(float(s) for s in spacing),
        tuple(float(o) for o in origin), reference.direction,
    )


def preprocess_icr_case(dataset: Dataset, case_id: str, config: ICRDataConfig) -> ICRCase:
    case = dataset.load(case_id)
    missing = [m for m in config.modalities if m not in case.images]
    if missing:
        raise InputError(f"case {case_id}: no {', '.join(missing)} image (it has {', '.join(case.images)})")
    if case.structures is None or config.structure not in case.structures:
        names = ", ".join(case.structures.names) if case.structures is not None else "none"
        raise InputError(f"case {case_id}: no structure '{config.structure}' (structures: {names})")
    target = crop_geometry(case.geometry, config)
    image = channels_on_grid([case.images[m] for m in config.modalities], config.modalities, target)
    mask = case.structures[config.structure].mask
    truth = resample(Volume(mask, case.structures.geometry), target, label=True).array
    if not truth.any():
        raise InputError(
            f"case {case_id}: structure '{config.structure}' lies outside the {config.size_kji} crop at the image centre"
        )
    return ICRCase(case_id, image, truth, target)


def icr_cache_dir(dataset: Dataset, config: ICRDataConfig, root: Path | None = None) -> Path:
    settings = json.dumps(asdict(config), sort_keys=True)
    key = hashlib.sha1(f"{dataset.format}:{Path(dataset.root).resolve()}:{CACHE_VERSION}:{settings}".encode()).hexdigest()[:12]
    return (root or default_cache_root()) / f"{Path(dataset.root).name}-icr-{key}"


def _arrays(c: ICRCase) -> dict[str, np.ndarray]:
    g = c.geometry
    return dict(
        image=c.image.astype(np.float16), truth=np.packbits(c.truth, axis=-1), shape=np.array(g.shape),
        spacing=np.array(g.spacing), origin=np.array(g.origin), direction=np.array(g.direction),
    )


def load_icr_case(path: Path) -> ICRCase:
    z = np.load(path)
    shape = tuple(int(s) for s in z["shape"])
    geometry = Geometry(shape, tuple(map(float, z["spacing"])), tuple(map(float, z["origin"])), tuple(map(float, z["direction"])))
    truth = np.unpackbits(z["truth"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return ICRCase(path.stem, z["image"].astype(np.float32), truth, geometry)


def cached_icr_cases(
    dataset: Dataset,
    config: ICRDataConfig,
    case_ids: Sequence[str],
    root: Path | None = None,
    on_case: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[Path]:
    """Paths of the cached crops of ``case_ids``, computing missing ones (in ``workers`` processes)."""
    make = partial(_make_arrays, dataset, config=config)
    return get_or_make(icr_cache_dir(dataset, config, root), case_ids, make, on_case, workers)


def _make_arrays(dataset: Dataset, case_id: str, config: ICRDataConfig) -> dict[str, np.ndarray]:
    return _arrays(preprocess_icr_case(dataset, case_id, config))


def augmentation(seed: int) -> Compose:
    """Affine (rotation, scaling), flips along every axis and intensity scale/shift, on dicts of
    ``image`` (C, D, H, W) and ``label`` (1, D, H, W)."""
    keys = ["image", "label"]
    transform = Compose([
        RandAffined(keys, prob=0.5, rotate_range=(0.26, 0.1, 0.1), scale_range=(0.1, 0.1, 0.1),
                    mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandFlipd(keys, prob=0.5, spatial_axis=0),
        RandFlipd(keys, prob=0.5, spatial_axis=1),
        RandFlipd(keys, prob=0.5, spatial_axis=2),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.1, prob=0.5),
    ])
    transform.set_random_state(seed=seed)
    return transform

"""Network input channels for co-registered CT, PET and MR: one normalised channel per modality.

Training (cached crops) and inference (the refinement session) both go through :func:`normalise`,
so a model always sees its inputs scaled the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume, resample
from sparsert.preprocessing.ct import ct_to_hu, soft_tissue_window

# PET in SUV: tumour uptake in the sarcoma data reaches ~25; 0..20 onto 0..2 keeps the scale of CT.
PET_MAX_SUV = 20.0
PET_SCALE_SUV = 10.0
# MR T1 has no absolute scale: the 99.5th percentile of the non-zero voxels maps to 1.
MR_PERCENTILE = 99.5

MODALITIES = ("ct", "pet", "mr")
# Plausibility of an image for the modality it is given as, to catch images given in the wrong order: a CT holds
# more than air (a PET in SUV read as a CT, its values 0..30 taken for HU + 1024, holds nothing above -990 HU),
# while a PET or MR has no share of its voxels (1 %) as low as a CT's air.
AIR_LIKE_VALUE = -500.0
SHARE_PERCENT = 1.0


def normalise(array: np.ndarray, modality: str) -> np.ndarray:
    """One network channel (float32) from an image in its native unit: CT in HU through the
    soft-tissue window (0..1), PET in SUV (0..2), MR scaled by a high percentile (0..2)."""
    if modality == "ct":
        return soft_tissue_window(ct_to_hu(array))
    if modality == "pet":
        return (np.clip(array.astype(np.float32), 0.0, PET_MAX_SUV) / PET_SCALE_SUV).astype(np.float32)
    if modality == "mr":
        values = array[array > 0]
        scale = float(np.percentile(values, MR_PERCENTILE)) if values.size else 1.0
        return np.clip(array.astype(np.float32) / max(scale, 1e-6), 0.0, 2.0).astype(np.float32)
    raise InputError(f"unknown modality '{modality}' (known: {', '.join(MODALITIES)})")


def modality_mismatch(array: np.ndarray, modality: str) -> str | None:
    """Why ``array`` does not look like an image of ``modality`` (most often: CT and PET swapped), or None."""
    sample = array[::2, ::4, ::4]  # the share of low or high values, not their exact percentile
    if modality == "ct":
        if ct_to_hu(sample).max() < AIR_LIKE_VALUE:
            return f"does not look like a CT (nothing above {AIR_LIKE_VALUE:.0f} HU)"
    elif np.percentile(sample, SHARE_PERCENT) < AIR_LIKE_VALUE:
        return f"looks like a CT (values as low as a CT's air, {float(sample.min()):.0f})"
    return None


def check_modalities(volumes: Sequence[Volume], modalities: Sequence[str], names: Sequence[str]) -> None:
    """InputError naming the first image that does not look like the modality it is given as."""
    for volume, modality, name in zip(volumes, modalities, names):
        problem = modality_mismatch(volume.array, modality)
        if problem:
            order = ", then ".join(m.upper() for m in modalities)
            raise InputError(f"{name}, given as the {modality.upper()}, {problem}: the images go in the order {order}")


def channels_on_grid(volumes: Sequence[Volume], modalities: Sequence[str], target: Geometry) -> np.ndarray:
    """(C, D, H, W) float32 channels: each volume normalised on its own grid (HU and percentile
    detection need the whole image), then resampled linearly onto ``target`` through physical space.

    Beyond an image's field of view the channel is 0, which every normalisation gives to empty
    space (air in CT, no uptake in PET, no signal in MR).
    """
    if len(volumes) != len(modalities):
        raise InputError(f"{len(volumes)} image(s) given for {len(modalities)} modalities ({', '.join(modalities)})")
    channels = []
    for volume, modality in zip(volumes, modalities):
        channels.append(resample(volume.with_array(normalise(volume.array, modality)), target, default=0.0).array)
    return np.stack(channels)

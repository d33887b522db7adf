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

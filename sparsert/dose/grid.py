"""The coarser grid the dose network works on, and the way between it and the CT grid.

Inputs are averaged down (area interpolation, so masks become partial-volume fractions) to about
``spacing_mm`` per voxel and padded to a multiple of the network's size step; the dose comes back
to the CT grid by trilinear interpolation. Both directions work in index space, so the CT's
direction cosines are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sparsert.dose.inputs import BODY_CHANNEL, CT_CHANNELS

# Wide CT window of air; every other channel (soft-tissue window, masks) pads with zero.
_PAD_VALUES = (-1.0,) + (0.0,) * (CT_CHANNELS - 1)


def working_shape(shape: Sequence[int], spacing_kji: Sequence[float], working_spacing_kji: Sequence[float]) -> tuple[int, ...]:
    return tuple(max(1, int(round(n * s / w))) for n, s, w in zip(shape, spacing_kji, working_spacing_kji))


def to_working(channels: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(B, C, *ct_shape) -> (B, C, *shape) by area averaging."""
    return F.interpolate(channels, size=tuple(shape), mode="area")


def to_ct_grid(dose: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(B, 1, *working_shape) -> (B, 1, *ct_shape), trilinear."""
    return F.interpolate(dose, size=tuple(shape), mode="trilinear", align_corners=False)


def pad_to_shape(channels: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes at their end up to ``shape`` (air in the wide CT window, zero elsewhere);
    returns the padded tensor and the original region."""
    out = channels.new_zeros(channels.shape[:2] + tuple(shape))
    for c, value in enumerate(_PAD_VALUES):
        out[:, c] = value
    region = tuple(slice(0, n) for n in channels.shape[2:])
    out[(slice(None), slice(None)) + region] = channels
    return out, region


def pad_to_multiple(channels: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Pad the spatial axes at their end to a multiple; returns the padded tensor and the original region."""
    return pad_to_shape(channels, tuple(-(-n // multiple) * multiple for n in channels.shape[2:]))


def body_box(channels: torch.Tensor, least: Sequence[int]) -> tuple[slice, ...]:
    """The bounding box of the possible-dose (body) channel of (B, C, *shape) channels, grown about its
    centre to at least ``least`` voxels per axis where the volume allows; the whole volume when the
    body is empty."""
    body = channels[:, BODY_CHANNEL].amax(0) > 0
    box = []
    for axis, (n, m) in enumerate(zip(body.shape, least)):
        inside = torch.nonzero(body.any(dim=tuple(a for a in range(body.dim()) if a != axis))).flatten()
        if inside.numel() == 0:
            return tuple(slice(0, size) for size in body.shape)
        lo, hi = int(inside[0]), int(inside[-1]) + 1
        size = max(hi - lo, min(m, n))
        lo = min(max(0, lo - (size - (hi - lo)) // 2), n - size)
        box.append(slice(lo, lo + size))
    return tuple(box)


def flip_lr(channels: torch.Tensor, organ_start: int, left_right: tuple[int, int]) -> torch.Tensor:
    """Mirror left-right (the last axis) and swap the left and right organ channels with it."""
    out = channels.flip(-1)
    right, left = (organ_start + i for i in left_right)
    swapped = out.clone()
    swapped[:, right], swapped[:, left] = out[:, left], out[:, right]
    return swapped


def as_batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]

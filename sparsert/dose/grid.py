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
from sparsert.masks import bounding_box

# Wide CT window of air; every other channel (soft-tissue window, masks) pads with zero.
_PAD_VALUES = (-1.0,) + (0.0,) * (CT_CHANNELS - 1)


def working_shape(shape: Sequence[int], spacing_kji: Sequence[float], working_spacing_kji: Sequence[float]) -> tuple[int, ...]:
    return tuple(max(1, int(round(n * s / w))) for n, s, w in zip(shape, spacing_kji, working_spacing_kji))


def to_working(channels: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(B, C, *ct_shape) -> (B, C, *shape) by area averaging: ``F.interpolate(mode="area")``'s bins and
    values (to float rounding), each channel averaged over only the box where it is non-zero (unless
    it needs gradients).

    Written out because most channels are masks of small organs: torch's adaptive average pooling
    of all 11 channels of a 128^3 CT took about 30 % of a dose prediction, this a third of that.
    """
    out = channels.new_zeros(channels.shape[:2] + tuple(shape))
    averaging = [_area_matrix(n_in, n_out, channels) for n_in, n_out in zip(channels.shape[2:], shape)]
    for b in range(channels.shape[0]):
        for c in range(channels.shape[1]):
            x = channels[b, c]
            # Under autograd every voxel gets its gradient, zero or not (soft masks in end-to-end training).
            box = tuple(slice(0, n) for n in x.shape) if x.requires_grad else _nonzero_box(x)
            if box is None:
                continue
            rows = [_bins_touching(a, s) for a, s in zip(averaging, box)]
            ak, aj, ai = (a[r, s] for a, r, s in zip(averaging, rows, box))
            y = aj @ (x[box] @ ai.T)  # (k, j', i'): the in-plane axes, one slice at a time
            y = (ak @ y.reshape(y.shape[0], -1)).reshape(ak.shape[0], aj.shape[0], ai.shape[0])
            out[(b, c) + tuple(rows)] = y
    return out


def _area_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix averaging adaptive pooling's bins: bin o covers floor(o n_in / n_out) up to
    ceil((o + 1) n_in / n_out)."""
    o = torch.arange(n_out)[:, None]
    i = torch.arange(n_in)[None]
    inside = (i >= (o * n_in) // n_out) & (i < -(-(o + 1) * n_in // n_out))
    inside = inside.to(like.dtype)
    return inside / inside.sum(1, keepdim=True)


def _nonzero_box(x: torch.Tensor) -> tuple[slice, ...] | None:
    """The bounding box of the non-zero voxels of ``x``; None when there are none."""
    return bounding_box((x != 0).cpu().numpy())


def _bins_touching(matrix: torch.Tensor, inputs: slice) -> slice:
    """The output bins (rows of ``matrix``) that average any of the ``inputs``."""
    rows = torch.nonzero(matrix[:, inputs].any(1)).flatten()
    return slice(int(rows[0]), int(rows[-1]) + 1)


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
    tight = _nonzero_box(body)
    if tight is None:
        return tuple(slice(0, size) for size in body.shape)
    box = []
    for inside, n, m in zip(tight, body.shape, least):
        lo, hi = inside.start, inside.stop
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

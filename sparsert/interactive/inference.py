"""Refinement passes of the stage-2 network: over the whole volume, or over a region around the click.

The region pass runs the network on a box of about ``size_mm`` centred on the click and pastes back
its inner part (a ``context_mm`` band at the box's sides inside the volume is dropped: there the
network saw a cut-off context). Outside the pasted part the previous probability is kept. This is
what makes a click fast on a CPU; :func:`region_vs_whole` measures how far it is from a
whole-volume pass on the same inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from sparsert.interactive.clicks import Box
from sparsert.metrics.segmentation import dice
from sparsert.models.icr import ClickModel

THRESHOLD = 0.5  # probability above which a voxel is in the mask


@dataclass(frozen=True)
class RegionSettings:
    size_mm: float = 128.0
    context_mm: float = 16.0


@dataclass
class RegionComparison:
    """Region pass against whole-volume pass, both from the same previous probability and clicks.

    Inside the pasted region the two differ by the cut-off context (and, with instance norm, by
    the region's own statistics); outside it the region pass keeps the previous probability, so
    there the difference is what the whole-volume pass would have changed far from the click.
    """

    max_abs_difference: float  # probability, anywhere in the volume
    mean_abs_difference: float  # probability, over the whole volume
    inside_max_abs_difference: float  # probability, inside the pasted region
    inside_mean_abs_difference: float
    mask_disagreement_voxels: int  # voxels on opposite sides of the threshold, anywhere
    outside_disagreement_voxels: int  # the same, outside the pasted region
    mask_dice: float  # Dice of the two masks (1.0 when both are empty)
    region_voxels: int  # voxels the region pass pasted back
    region_seconds: float
    whole_seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def region_boxes(
    center_kji: tuple[int, int, int],
    shape: tuple[int, int, int],
    spacing_kji: tuple[float, float, float],
    settings: RegionSettings,
    multiple: int,
) -> tuple[Box, Box]:
    """(box the network sees, inner box pasted back), both in volume coordinates.

    Box sides are multiples of ``multiple`` (what the U-Net needs) unless the box spans the whole
    axis; a box near the volume's edge is shifted inwards rather than shrunk.
    """
    outer, inner = [], []
    for c, n, s in zip(center_kji, shape, spacing_kji):
        size = int(np.ceil(settings.size_mm / s / multiple)) * multiple
        if size >= n:
            outer.append(slice(0, n))
            inner.append(slice(0, n))
            continue
        start = int(np.clip(c - size // 2, 0, n - size))
        stop = start + size
        trim = int(round(settings.context_mm / s))
        lo = start if start == 0 else start + trim
        hi = stop if stop == n else stop - trim
        outer.append(slice(start, stop))
        inner.append(slice(lo, hi))
    return tuple(outer), tuple(inner)  # type: ignore[return-value]


def _tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None].to(device)


def refine_whole(
    model: ClickModel, image: torch.Tensor, previous: np.ndarray, positive: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """Refined probability over the whole volume; ``image`` is (1, C, D, H, W) on the model's device."""
    d = image.device
    out = model.refine_probability(image, _tensor(previous, d), _tensor(positive, d), _tensor(negative, d))
    return out[0, 0].cpu().numpy()


def refine_region(
    model: ClickModel,
    image: torch.Tensor,
    previous: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    click_kji: tuple[int, int, int],
    spacing_kji: tuple[float, float, float],
    settings: RegionSettings,
) -> tuple[Box, np.ndarray]:
    """(inner box, refined probability inside it) for a click at ``click_kji``."""
    outer, inner = region_boxes(click_kji, previous.shape, spacing_kji, settings, model.spec.network.size_multiple)
    d = image.device
    out = model.refine_probability(
        image[(slice(None), slice(None)) + outer],
        _tensor(previous[outer], d), _tensor(positive[outer], d), _tensor(negative[outer], d),
    )[0, 0].cpu().numpy()
    local = tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer))
    return inner, out[local]


def region_vs_whole(
    model: ClickModel,
    image: torch.Tensor,
    previous: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
    click_kji: tuple[int, int, int],
    spacing_kji: tuple[float, float, float],
    settings: RegionSettings,
) -> RegionComparison:
    """Run both passes on the same inputs and report their difference."""
    start = time.perf_counter()
    box, values = refine_region(model, image, previous, positive, negative, click_kji, spacing_kji, settings)
    region = previous.copy()
    region[box] = values
    region_seconds = time.perf_counter() - start
    start = time.perf_counter()
    whole = refine_whole(model, image, previous, positive, negative)
    whole_seconds = time.perf_counter() - start
    diff = np.abs(region - whole)
    a, b = region > THRESHOLD, whole > THRESHOLD
    disagree = a != b
    inside = diff[box]
    return RegionComparison(
        max_abs_difference=float(diff.max()),
        mean_abs_difference=float(diff.mean()),
        inside_max_abs_difference=float(inside.max()),
        inside_mean_abs_difference=float(inside.mean()),
        mask_disagreement_voxels=int(np.count_nonzero(disagree)),
        outside_disagreement_voxels=int(np.count_nonzero(disagree)) - int(np.count_nonzero(disagree[box])),
        mask_dice=float(dice(a, b)),
        region_voxels=int(values.size),
        region_seconds=region_seconds,
        whole_seconds=whole_seconds,
    )

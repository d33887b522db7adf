"""Losses of the cross-modal tumour network (CmFNet's hybrid supervision).

- Scribble supervision: partial cross-entropy on the scribbled voxels of every output (by default
  class-balanced: tumour and background scribbles weigh the same in total).
- Intra-modal regularisation: a gated CRF loss (Obukhov et al., "Gated CRF loss for weakly
  supervised semantic image segmentation", 2019) on 2D neighbourhoods of the axial, coronal and
  sagittal slices, averaged over the three views. For a pair of voxels (a, b) in a slice
  neighbourhood, the kernel is ``K_ab = exp(-|x_a - x_b|^2 / 2 sigma_xy^2 - |I_a - I_b|^2 / 2 sigma_I^2)``
  (positions in mm, intensities in network units), gated to zero where either voxel is invalid
  (padding, outside the MR field of view); the Potts penalty is the probability that the two voxels
  get different labels, ``p_a (1 - p_b) + p_b (1 - p_a)``. The loss is the kernel-weighted penalty
  summed over each voxel's neighbours, averaged over voxels: cheap when labels change only where
  intensities do.
- Inter-modal consistency: ``alpha_ct ||y_mm - y_ct||^2 + alpha_mr ||y_mm - y_mr||^2`` on
  probabilities (mean over voxels).

All maps are (B, 1, D, H, W) with axes (k, j, i); outputs are tumour logits (binary problem).
"""

from __future__ import annotations

import itertools

import torch

from sparsert.losses.completion import partial_bce

# In-plane axes (of D, H, W = k, j, i) of each view's slices.
VIEWS: dict[str, tuple[int, int]] = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}


def scribble_loss(
    logits: dict[str, torch.Tensor], foreground: torch.Tensor, background: torch.Tensor, balanced: bool = True
) -> torch.Tensor:
    """Partial cross-entropy on the scribbles, summed over the outputs; unlabelled voxels add nothing.

    ``balanced`` averages the tumour-scribble and background-scribble means, as background strokes
    outnumber tumour strokes about ten to one; otherwise every scribbled voxel weighs the same.
    """
    if not balanced:
        return sum(partial_bce(y, foreground, background) for y in logits.values())
    none = torch.zeros_like(foreground)
    return sum(0.5 * (partial_bce(y, foreground, none) + partial_bce(y, none, background)) for y in logits.values())


def view_offsets(axes: tuple[int, int], radius: int) -> list[tuple[int, int, int]]:
    """One of each pair {d, -d} of the in-plane neighbour offsets within ``radius`` voxels (kernels are symmetric)."""
    offsets = []
    for u, v in itertools.product(range(-radius, radius + 1), repeat=2):
        if (u, v) > (0, 0):  # lexicographically positive: exactly one of d and -d
            d = [0, 0, 0]
            d[axes[0]], d[axes[1]] = u, v
            offsets.append(tuple(d))
    return offsets


def pair_slices(shape: tuple[int, ...], offset: tuple[int, int, int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices selecting the voxels a and their partners b = a + offset, over the last three axes."""
    first, second = [], []
    for size, d in zip(shape[-3:], offset):
        first.append(slice(max(0, -d), size - max(0, d)))
        second.append(slice(max(0, d), size - max(0, -d)))
    lead = (slice(None),) * (len(shape) - 3)
    return lead + tuple(first), lead + tuple(second)


def pair_kernel(
    features: torch.Tensor,
    offset: tuple[int, int, int],
    spacing_kji: tuple[float, float, float],
    sigma_xy_mm: float,
    sigma_intensity: float,
) -> torch.Tensor:
    """Kernel ``K_ab`` of every voxel pair (a, a + offset) inside the volume, (B, 1, ...) over the overlap."""
    a, b = pair_slices(features.shape, offset)
    distance2 = sum((d * s) ** 2 for d, s in zip(offset, spacing_kji))
    diff2 = (features[a] - features[b]).pow(2).sum(1, keepdim=True)
    return torch.exp(-diff2 / (2 * sigma_intensity**2) - distance2 / (2 * sigma_xy_mm**2))


def gated_crf_loss(
    prob: torch.Tensor,
    features: torch.Tensor,
    spacing_kji: tuple[float, float, float],
    *,
    radius: int = 3,
    sigma_xy_mm: float = 6.0,
    sigma_intensity: float = 0.1,
    valid: torch.Tensor | None = None,
    views: tuple[str, ...] = tuple(VIEWS),
) -> torch.Tensor:
    """Multi-view gated CRF loss of tumour probabilities ``prob`` driven by image ``features``.

    ``features`` (B, C, D, H, W) are the intensities the kernel compares; ``valid`` (B, 1, D, H, W)
    gates voxels out (padding, no MR). Returns the mean over ``views`` of the per-voxel sum of
    kernel-weighted Potts penalties over each voxel's 2D neighbourhood.
    """
    features = features.detach()
    gate = valid.to(prob.dtype) if valid is not None else None
    voxels = prob.numel()
    losses = []
    for view in views:
        total = prob.new_zeros(())
        for offset in view_offsets(VIEWS[view], radius):
            a, b = pair_slices(prob.shape, offset)
            if any(s.start >= s.stop for s in a[-3:]):
                continue
            with torch.no_grad():
                kernel = pair_kernel(features, offset, spacing_kji, sigma_xy_mm, sigma_intensity)
                if gate is not None:
                    kernel = kernel * gate[a] * gate[b]
            pa, pb = prob[a], prob[b]
            # Both (a, b) and (b, a) count, and K is symmetric: twice the one-sided sum.
            total = total + 2 * (kernel * (pa + pb - 2 * pa * pb)).sum()
        losses.append(total / voxels)
    return torch.stack(losses).mean()


def consistency_loss(
    fused: torch.Tensor, ct: torch.Tensor, mr: torch.Tensor, alpha_ct: float = 0.8, alpha_mr: float = 0.8
) -> torch.Tensor:
    """Inter-modal consistency of probabilities: alpha_ct mean((mm - ct)^2) + alpha_mr mean((mm - mr)^2)."""
    return alpha_ct * (fused - ct).pow(2).mean() + alpha_mr * (fused - mr).pow(2).mean()


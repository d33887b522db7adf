"""Losses of the scribble completion module.

All per-structure losses treat each structure as its own binary problem (multi-label output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def partial_bce(logits: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on annotated voxels only (partial cross-entropy).

    ``positive`` marks the structure's own scribble voxels, ``negative`` the scribbles known to lie
    outside it (background strokes and structures that do not overlap it).
    """
    labelled = (positive + negative).clamp(max=1.0)
    if labelled.sum() == 0:
        return logits.sum() * 0.0
    loss = F.binary_cross_entropy_with_logits(logits, positive, reduction="none")
    return (loss * labelled).sum() / labelled.sum()


def dense_bce_dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """BCE + soft Dice against a dense mask, per batch item then averaged."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    prob = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = (2 * (prob * t).sum(1) + eps) / (prob.sum(1) + t.sum(1) + eps)
    return bce + (1 - dice).mean()


def compactness(features: torch.Tensor, scribbles: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of scribble-voxel features to their class centroid.

    features (B, C, N) l2-normalised, scribbles (B, K, N), centroids (B, K, C).
    """
    counts = scribbles.sum(-1)  # B, K
    present = counts > 0
    if not present.any():
        return features.sum() * 0.0
    # ||f - c||^2 = 2 - 2 f.c for unit vectors
    dots = torch.einsum("bcn,bkc->bkn", features, centroids)
    per_class = ((2 - 2 * dots) * scribbles).sum(-1) / counts.clamp_min(1.0)
    return per_class[present].mean()


def separation(centroids: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean of exp(-||c_k - c_j||^2) over pairs of present classes: pushes centroids apart."""
    losses = []
    for b in range(centroids.shape[0]):
        c = centroids[b, present[b]]
        if c.shape[0] < 2:
            continue
        d2 = torch.cdist(c, c).pow(2)
        off = ~torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
        losses.append(torch.exp(-d2[off]).mean())
    if not losses:
        return centroids.sum() * 0.0
    return torch.stack(losses).mean()


def soft_boundary(prob: torch.Tensor) -> torch.Tensor:
    """Soft boundary of probability maps (N, 1, D, H, W): a 3x3x3 morphological gradient in [0, 1]."""
    dilated = F.max_pool3d(prob, 3, stride=1, padding=1)
    eroded = -F.max_pool3d(-prob, 3, stride=1, padding=1)
    return dilated - eroded


def boundary_alignment(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Supervoxel boundary loss: the predicted boundary should lie on image (supervoxel) boundaries.

    ``target`` is the soft supervoxel boundary map in [0, 1]. Image edges that are not structure
    boundaries are many, so the loss only penalises predicted boundary mass far from them: the
    boundary-weighted mean of (1 - target).
    """
    b = soft_boundary(prob)
    return (b * (1 - target)).sum() / (b.sum() + eps)

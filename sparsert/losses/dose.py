"""Losses of the dose network: L1 inside the possible-dose mask and the target-over-organ ranking."""

from __future__ import annotations

import torch


def masked_l1(predicted: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |predicted - reference| over the (soft) mask."""
    return ((predicted - reference).abs() * mask).sum() / mask.sum().clamp_min(1e-6)


def ranking(predicted: torch.Tensor, target: torch.Tensor, organs: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of max(0, mean dose in organs - mean dose in targets).

    Samples without a target or without an organ in view add nothing.
    """
    dims = tuple(range(1, predicted.dim()))
    t_sum, o_sum = target.sum(dims), organs.sum(dims)
    mean_t = (predicted * target).sum(dims) / t_sum.clamp_min(1e-6)
    mean_o = (predicted * organs).sum(dims) / o_sum.clamp_min(1e-6)
    valid = (t_sum > 0) & (o_sum > 0)
    return (torch.relu(mean_o - mean_t) * valid).sum() / predicted.shape[0]


def dose_losses(
    predicted: torch.Tensor, reference: torch.Tensor, body: torch.Tensor, target: torch.Tensor, organs: torch.Tensor,
    rank_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The terms and their weighted ``total``; ``target`` marks targets (any prescription), ``organs`` organs."""
    losses = {"l1": masked_l1(predicted, reference, body)}
    if rank_weight > 0:
        losses["ranking"] = ranking(predicted, (target > 0).float(), (organs > 0).float())
    losses["total"] = losses["l1"] + rank_weight * losses.get("ranking", 0.0)
    return losses

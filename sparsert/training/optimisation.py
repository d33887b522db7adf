"""What every trainer shares on the optimiser side: AdamW with cosine decay, clipped updates,
resumable state, and running loss averages for the run log."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

CLIP_NORM = 5.0


def cosine(step: int, steps: int) -> float:
    """Learning-rate factor: cosine decay from 1 to 0 over ``steps``."""
    return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


class Optimisation:
    """AdamW over ``parameters`` (default: all of ``model``'s) with a cosine schedule over ``steps``."""

    def __init__(
        self, model: nn.Module, lr: float, weight_decay: float, steps: int,
        parameters: Iterable[nn.Parameter] | None = None,
    ) -> None:
        self.model = model
        self.optimiser = torch.optim.AdamW(parameters if parameters is not None else model.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, lambda s: cosine(s, steps))

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (gradients clipped to norm 5), then the schedule's step."""
        self.optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        self.optimiser.step()
        self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state(self, step: int, best: float | None = None) -> dict:
        """The checkpoint: weights, optimiser and schedule, step and best validation score."""
        return {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                "scheduler": self.scheduler.state_dict(), "step": step, "best": best}

    def restore(self, state: Mapping) -> tuple[int, float | None]:
        """Load a checkpoint of :meth:`state`; returns its step and best score (None if it kept none)."""
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        return state["step"], state.get("best")


class RunningLosses:
    """Sums of logged loss terms since the last :meth:`flush`."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, losses: Mapping[str, torch.Tensor | float]) -> None:
        for name, value in losses.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value.detach() if isinstance(value, torch.Tensor) else value)
        self._count += 1

    def flush(self) -> dict[str, float]:
        """The mean of each term since the last flush, then start again."""
        means = {name: total / max(self._count, 1) for name, total in self._sums.items()}
        self._sums, self._count = {}, 0
        return means

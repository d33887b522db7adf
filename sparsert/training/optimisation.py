"""What every trainer shares on the optimiser side: AdamW with cosine decay, clipped updates, an
optional exponential moving average of the weights, resumable state, and running loss averages for
the run log."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

CLIP_NORM = 5.0


def cosine(step: int, steps: int) -> float:
    """Learning-rate factor: cosine decay from 1 to 0 over ``steps``."""
    return 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


class WeightAverage:
    """Exponential moving average of a model's state (weights and batch-norm statistics alike):
    ``average = decay * average + (1 - decay) * current`` after every step. Integer entries (batch
    counters) are copied. On a few training cases one step's weights swing with the last case seen;
    the average over the last ~1 / (1 - decay) steps does not."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay must lie in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        for name, value in self.model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - self.decay)
            else:
                average.copy_(value)

    def averaged_model(self) -> nn.Module:
        """A copy of the model holding the averaged state (the training model is left as it is)."""
        averaged = copy.deepcopy(self.model)
        averaged.load_state_dict(self.state)
        return averaged


class Optimisation:
    """AdamW over ``parameters`` (default: all of ``model``'s) with a cosine schedule over ``steps``;
    with ``average_decay`` > 0 also a :class:`WeightAverage` of the model."""

    def __init__(
        self, model: nn.Module, lr: float, weight_decay: float, steps: int,
        parameters: Iterable[nn.Parameter] | None = None, average_decay: float = 0.0,
    ) -> None:
        self.model = model
        self.optimiser = torch.optim.AdamW(parameters if parameters is not None else model.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimiser, lambda s: cosine(s, steps))
        self.average = WeightAverage(model, average_decay) if average_decay > 0 else None

    def result_model(self) -> nn.Module:
        """The model to validate and ship: the weight average when kept, else the model itself."""
        return self.average.averaged_model() if self.average is not None else self.model

    def update(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (gradients clipped to norm 5), then the schedule's step."""
        self.optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP_NORM)
        self.optimiser.step()
        self.scheduler.step()
        if self.average is not None:
            self.average.update()

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def state(self, step: int, best: float | None = None) -> dict:
        """The checkpoint: weights, optimiser and schedule, step and best validation score."""
        state = {"model": self.model.state_dict(), "optimiser": self.optimiser.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": step, "best": best}
        if self.average is not None:
            state["average"] = self.average.state
        return state

    def restore(self, state: Mapping) -> tuple[int, float | None]:
        """Load a checkpoint of :meth:`state`; returns its step and best score (None if it kept none)."""
        self.model.load_state_dict(state["model"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None:
            if "average" not in state:
                raise ValueError("the checkpoint keeps no weight average: resume with the settings it was trained with")
            self.average.state = {k: v.clone() for k, v in state["average"].items()}
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

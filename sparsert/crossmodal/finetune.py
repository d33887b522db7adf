"""Per-case fine-tuning of a cross-modal model on the user's scribbles of that case.

A physicist who disagrees with the segmentation paints a few tumour and background scribbles on the
CT; a copy of the network then takes a few optimiser steps on this case alone, with the losses it was
trained with (partial cross-entropy on the scribbles, the CT- and MR-driven gated CRF and the
inter-modal consistency), on patches centred on the tumour scribbles. The registered model itself is
never changed.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sparsert.crossmodal.inference import CrossModalModel
from sparsert.crossmodal.preprocess import NetworkInputs
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.scribbles import automatic_background
from sparsert.training.optimisation import Optimisation


@dataclass
class FineTuning:
    steps: int = 30
    lr: float = 2e-4
    batch_size: int = 2
    automatic_margin_mm: float = 40.0  # background beyond this distance from the tumour scribbles, when none is drawn
    seed: int = 0

    def check(self) -> None:
        if self.steps < 1:
            raise InputError(f"fine-tuning steps must be at least 1, got {self.steps}")
        if not self.lr > 0:
            raise InputError(f"fine-tuning learning rate must be positive, got {self.lr}")


def scribble_masks(scribbles: Segmentation, inputs: NetworkInputs, margin_mm: float, name: str = "scribbles") -> tuple[np.ndarray, np.ndarray]:
    """Tumour (every segment but ``Background``) and background scribbles on the working grid.

    Without background strokes the background is every voxel farther than ``margin_mm`` from the
    tumour scribbles.
    """
    # Imported here: the training module imports this package's inference, so a module-level import
    # would be circular whichever of the two is imported first.
    from sparsert.training.crossmodal import scribbles_on_grid

    foreground, strokes = scribbles_on_grid(scribbles, inputs.geometry, name)
    if not strokes.any():
        strokes = automatic_background(foreground, inputs.geometry, margin_mm=margin_mm)
    return foreground, strokes & ~foreground


def fine_tuned(
    model: CrossModalModel, inputs: NetworkInputs, scribbles: Segmentation, settings: FineTuning | None = None,
    *, name: str = "scribbles", on_step: Callable[[int, int], None] | None = None,
) -> CrossModalModel:
    """A copy of ``model`` fine-tuned on this case's ``scribbles`` (any grid overlapping the CT's).

    ``on_step(step, steps)`` is called after every step (progress, and cancellation by raising).
    """
    from sparsert.training.crossmodal import CrossModalTrainConfig, PatchSampler, TrainingCase, step_losses
    from sparsert.training.crossmodal_cache import CrossModalCase

    settings = settings or FineTuning()
    settings.check()
    foreground, background = scribble_masks(scribbles, inputs, settings.automatic_margin_mm, name)
    config = CrossModalTrainConfig(batch_size=settings.batch_size)
    config.preprocessing = model.preprocessing
    if model.net.config.architecture != "cmfnet":  # a single-output network has no CT/MR outputs to regularise
        for key in ("lambda_ct", "lambda_mr", "alpha_ct", "alpha_mr"):
            setattr(config.losses, key, 0.0)
    case = CrossModalCase("case", inputs.ct, inputs.mr, inputs.mr_valid, inputs.body, np.zeros_like(foreground), inputs.geometry)
    sampler = PatchSampler([TrainingCase(case, foreground, background)], config, itertools.repeat(0),
                           np.random.default_rng(settings.seed))
    net = copy.deepcopy(model.net).train()
    optimisation = Optimisation(net, settings.lr, 0.0, settings.steps)
    with torch.random.fork_rng():
        torch.manual_seed(settings.seed)
        for step in range(1, settings.steps + 1):
            losses = step_losses(net, sampler.batch(settings.batch_size, model.device), config, inputs.geometry.spacing_kji)
            optimisation.update(losses["total"])
            if on_step:
                on_step(step, settings.steps)
    return CrossModalModel(net.eval(), model.preprocessing, f"{model.source} fine-tuned on {name}")

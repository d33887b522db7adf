"""End-to-end training of the scribble-guided dose model: scribbles -> completed masks -> dose.

The completion network (SCM) completes every structure of a case from simulated scribbles; its masks
take the place of the dense masks in the dose network's structure channels, so the dose loss (L1 in
the possible-dose mask + ranking) is back-propagated into the completion network, while the
completion losses of :mod:`sparsert.training.scm` keep its outputs faithful masks. Both networks
start from trained weights (by default the shipped ``scm`` and ``dose-mask``).

The masks enter the dose network binarised at 0.5, as at inference, with the straight-through
gradient of the probabilities. Each network is saved in its own model format (``scm.pt`` and
``dose.pt`` in the run folder), so inference is the ordinary scribble path:
``sparsert dose --scribbles S --completion-model RUN/scm.pt --model RUN/dose.pt``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sparsert.completion.scm import load_scm
from sparsert.completion.scm_forward import SCMPass, scm_pass
from sparsert.dose.grid import as_batch
from sparsert.dose.inputs import checked_roles, soft_structure_channels
from sparsert.dose.predict import DoseModel, load_dose_model
from sparsert.metrics.segmentation import dice
from sparsert.models.scm import SCMNet
from sparsert.roles import highest_prescription
from sparsert.scribbles.simulate import EVAL_SCRIBBLES
from sparsert.training import distributed
from sparsert.training.cache import CachedCase, load_cached
from sparsert.training.dose import (
    DoseTrainConfig, case_dose_error, channels_from_masks, completed_masks, random_crop, to_working_case,
)
from sparsert.training.dose import step_losses as dose_step_losses
from sparsert.training.optimisation import Optimisation, RunningLosses
from sparsert.training.run import RunFolder
from sparsert.training.scm import LossWeights, completion_losses, simulate_for, training_scribble_options

SCM_FILE = "scm.pt"
DOSE_FILE = "dose.pt"


@dataclass
class JointTrainConfig:
    steps: int = 400
    lr: float = 2e-4  # both networks start trained: a fine-tuning rate
    weight_decay: float = 1e-5
    seed: int = 0
    scm_init: str = "scm"  # registry name or model file
    dose_init: str = "dose-mask"
    dose_weight: float = 1.0
    completion_weight: float = 1.0  # 0: the completion network learns from the dose loss alone
    rank_weight: float = 1.0
    flip_p: float = 0.5
    val_every: int = 100
    checkpoint_every: int = 25
    log_every: int = 10
    val_cases: int = 6
    threads: int = 2
    losses: LossWeights = field(default_factory=LossWeights)


class JointNet(nn.Module):
    """The completion and dose networks as one module: one optimiser, one checkpoint."""

    def __init__(self, scm: SCMNet, dose: DoseModel) -> None:
        super().__init__()
        self.scm = scm
        self.dose = dose.net
        self.working_spacing_kji = dose.working_spacing_kji
        self.window = dose.window or DoseTrainConfig().crop  # models saved before windows: their training crop
        self.domain = dose.domain


def completed_channels(
    net: SCMNet, case: CachedCase, scribbles: np.ndarray, background: np.ndarray, out: SCMPass | None = None,
) -> torch.Tensor:
    """(1, C, *ct_shape) dose-network channels with every structure completed from ``scribbles``:
    masks binarised at 0.5 in the forward pass, the probabilities' gradient in the backward pass."""
    device = next(net.parameters()).device
    out = out or scm_pass(net, case.image, scribbles, background, case.spacing_kji, device=device)
    probs = torch.zeros((len(case.names),) + case.body.shape, device=device)
    for s in out.structures:
        region = tuple(slice(r.start + b.start, r.start + b.stop) for r, b in zip(out.roi, s.box))
        probs[(s.index,) + region] = torch.sigmoid(s.logits)[0, 0]
    masks = (probs >= 0.5).float() + (probs - probs.detach())  # exactly binary forward
    structures = soft_structure_channels(masks, case.names, checked_roles(case.names))
    image = torch.from_numpy(case.image).to(device)
    body = torch.from_numpy(case.body[None].astype(np.float32)).to(device)
    return torch.cat([image, structures, body])[None]


def step_losses(model: JointNet, case: CachedCase, config: JointTrainConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Scribbles for every structure of ``case``, completed, then a random dose crop: both losses."""
    device = next(model.parameters()).device
    everything = list(range(len(case.names)))
    scribbles, background = simulate_for(case, everything, rng, **training_scribble_options(rng))
    out = scm_pass(model.scm, case.image, scribbles, background, case.spacing_kji, device=device)
    roi = (slice(None),) + out.roi
    completion = completion_losses(out, torch.from_numpy(case.masks[roi]).float().to(device),
                                   torch.from_numpy(case.boundary[out.roi]).to(device), config.losses)
    channels = completed_channels(model.scm, case, scribbles, background, out)
    highest = float(highest_prescription(checked_roles(case.names)))
    working = to_working_case(case, channels, highest, model.working_spacing_kji)
    x, y = random_crop(working, model.window, config.flip_p, rng)
    dose = dose_step_losses(model.dose, x, y.to(device), config.rank_weight)
    losses = {f"dose_{k}": v for k, v in dose.items() if k != "total"}
    losses.update({f"completion_{k}": v for k, v in completion.items() if k != "total"})
    losses["total"] = config.dose_weight * dose["total"] + config.completion_weight * completion["total"]
    return losses


@torch.no_grad()
def validate(model: JointNet, cases: list[CachedCase], seed: int = 1234) -> dict:
    """Dose error (Gy) from scribbles at the issue's sparse setting, completed as at inference
    (thresholded, scribbles honoured), and the completion's mean Dice."""
    model.eval()
    errors, dices = {}, []
    for i, case in enumerate(cases):
        everything = list(range(len(case.names)))
        scribbles, background = simulate_for(case, everything, np.random.default_rng(seed + i), **EVAL_SCRIBBLES)
        masks = completed_masks(model.scm, case, scribbles, background)
        dices += [dice(masks[k], case.masks[k]) for k in everything]
        channels, highest = channels_from_masks(case, {name: masks[k] for k, name in enumerate(case.names)})
        working = to_working_case(case, as_batch(channels), highest, model.working_spacing_kji)
        errors[case.case_id] = case_dose_error(model.dose, case, working, model.window)
    model.train()
    return {"dose_score": float(np.mean(list(errors.values()))), "mean_dice": float(np.mean(dices)), "per_case": errors}


def train_joint(
    train_paths: list[Path], val_paths: list[Path], run: RunFolder, config: JointTrainConfig,
    resume: bool = True, device: str | torch.device = "auto",
) -> dict:
    device = distributed.setup(device)
    seed = distributed.seed_process(config.seed)
    torch.set_num_threads(config.threads)
    cases = [c for c in (load_cached(p) for p in train_paths) if c.dose is not None and c.names]
    if not cases:
        raise ValueError("no training case has both structures and a dose")
    model = JointNet(load_scm(config.scm_init), load_dose_model(config.dose_init)).to(device)
    optimisation = Optimisation(model, config.lr, config.weight_decay, config.steps)
    step, best = 0, math.inf
    state = run.load_checkpoint() if resume else None
    if state is not None:
        step, best = optimisation.restore(state)
    train_step = distributed.wrap(model, step_losses, device, mixed_precision=False)
    order = distributed.sample_order(len(cases), config.seed, start=step)
    rng = np.random.default_rng([seed, step])  # scribbles, crops and flips: fresh but reproducible after a resume
    run.write_config(config)
    # Only rank 0 validates (and writes the models); the other ranks wait in the next step's all-reduce.
    val_cases = [load_cached(p) for p in val_paths[: config.val_cases]] if distributed.is_main() else []
    if val_cases and step == 0:
        # The starting weights are a candidate too: fine-tuning must beat them to be kept.
        result = validate(model, val_cases)
        run.log(0, **{f"val_{k}": v for k, v in result.items()})
        best = result["dose_score"]
        save_models(run, model, {"step": 0, "val": result})
    model.train()
    running = RunningLosses()
    while step < config.steps:
        losses = train_step(cases[next(order)], config, rng)
        optimisation.update(losses["total"])
        step += 1
        running.add(losses)
        if step % config.log_every == 0:
            run.log(step, lr=optimisation.lr, **running.flush())
        last = step == config.steps
        if val_cases and (step % config.val_every == 0 or last):
            result = validate(model, val_cases)
            run.log(step, **{f"val_{k}": v for k, v in result.items()})
            if result["dose_score"] < best:
                best = result["dose_score"]
                save_models(run, model, {"step": step, "val": result})
        elif last and not val_cases:
            save_models(run, model, {"step": step})
        if step % config.checkpoint_every == 0 or last:
            run.save_checkpoint(optimisation.state(step, best))
    return distributed.finish(model, {"step": step, "best_dose_score": best})


def save_models(run: RunFolder, model: JointNet, metadata: dict) -> None:
    """Each network in its own model format, loadable by ``load_scm`` and ``load_dose_model``."""
    run.save_best(model.scm.state_dict(), model.scm.config.to_dict(), metadata, name=SCM_FILE)
    metadata = {**metadata, "trained": "jointly: scribbles -> completed masks -> dose"}
    dose_metadata = {**metadata, "working_spacing_kji": list(model.working_spacing_kji), "crop": list(model.window),
                     "domain": model.domain, "prompt": "scribble"}
    run.save_best(model.dose.state_dict(), model.dose.config.to_dict(), dose_metadata, name=DOSE_FILE)

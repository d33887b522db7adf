"""Training of the full-resolution dose refiner on top of a trained dose model (whose weights stay fixed).

The dose network works on a grid of about 5 x 3.9 x 3.9 mm and its dose is interpolated back to the
CT grid; :class:`~sparsert.models.dose_rmt.DoseRefiner` corrects that at the CT's resolution. Every
training case is prepared once: its input channels (from dense structures, or from simulated
scribbles completed by the completion network, ``prompt="completed"``, as the scribble-guided
model sees them) and the base model's interpolated dose, both cropped to the body's bounding box.
Each step takes random crops of a batch of cases, mirrors some left-right, and minimises the L1
error of the refined dose inside the possible-dose mask. Validation scores whole cases on the CT
grid with the OpenKBP dose error; the best refined model is written as one ordinary dose model file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sparsert.completion.scm import load_scm
from sparsert.device import resolve_device
from sparsert.dose.grid import as_batch, body_box, flip_lr, pad_to_shape
from sparsert.dose.inputs import BODY_CHANNEL, ORGAN_CHANNELS
from sparsert.dose.predict import PAROTIDS, DoseModel, ct_grid_dose, grown, load_dose_model, refined_dose
from sparsert.errors import InputError
from sparsert.losses.dose import masked_l1
from sparsert.metrics.dose import openkbp_dose_error
from sparsert.models.dose_rmt import DoseNet, DoseRefiner
from sparsert.training import distributed
from sparsert.training.cache import CachedCase, load_cached
from sparsert.training.dose import case_channels, random_box
from sparsert.training.optimisation import Optimisation, RunningLosses
from sparsert.training.run import RunFolder

PROMPTS = ("mask", "completed")


@dataclass
class RefinerTrainConfig:
    base: str = "dose-mask"  # the dose model refined (registry name or model file); its weights stay fixed
    width: int = 8  # channels of the refiner's convolutions
    prompt: str = "mask"  # "mask" (dense structures) or "completed" (scribbles completed by completion_model)
    completion_model: str = "scm"
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    batch: int = 2  # cases per step
    crop: tuple[int, int, int] = (32, 64, 64)  # CT-grid voxels
    flip_p: float = 0.5
    val_every: int = 250
    val_cases: int = 6
    checkpoint_every: int = 50
    log_every: int = 10
    threads: int = 2


@dataclass
class RefinerCase:
    """One case on the CT grid, cropped to the body's bounding box (grown by the refiner's reach)."""

    case_id: str
    box: tuple[slice, ...]  # where the crop lies on the CT grid
    channels: torch.Tensor  # (C, D, H, W) float16: 90 cases' channels then fit in about 3 GB
    coarse: torch.Tensor  # (1, D, H, W) the base model's interpolated dose / highest prescription
    dose: torch.Tensor  # (1, D, H, W) reference dose / highest prescription


def check_config(config: RefinerTrainConfig) -> None:
    if config.prompt not in PROMPTS:
        raise InputError(f"prompt must be one of {', '.join(PROMPTS)}, got {config.prompt!r}")
    if config.width < 1:
        raise InputError(f"width must be at least 1, got {config.width}")


def refined_network(base: DoseModel, width: int) -> DoseNet:
    """The base network with a fresh refiner (an unchanged dose until trained); the base weights frozen."""
    if base.net.refiner is not None:
        raise InputError(f"{base.source} has a refiner already: refine a model without one")
    net = DoseNet(replace(base.net.config, refiner_width=width))
    missing, unexpected = net.load_state_dict(base.net.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("refiner.") for k in missing)
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name.startswith("refiner."))
    return net.eval()


@torch.no_grad()
def refiner_case(base: DoseModel, case: CachedCase, channels: np.ndarray, highest: float) -> RefinerCase:
    x = as_batch(channels)
    coarse = ct_grid_dose(base, x.to(next(base.net.parameters()).device), case.spacing_kji).cpu()
    box = grown(body_box(x, (1, 1, 1)), DoseRefiner.reach, x.shape[2:])
    dose = torch.from_numpy(case.dose / highest)[None].float()
    every = (slice(None), *box)
    return RefinerCase(case.case_id, box, x[0][every].half(), coarse[0][every], dose[every])


def random_batch(
    cases: list[RefinerCase], order: Iterator[int], config: RefinerTrainConfig, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(channels, interpolated dose, reference dose) crops of the next ``config.batch`` cases."""
    crops = [random_crop(cases[next(order)], config.crop, config.flip_p, rng) for _ in range(config.batch)]
    return tuple(torch.cat(parts) for parts in zip(*crops))


def random_crop(case: RefinerCase, crop, flip_p: float, rng: np.random.Generator):
    box = (slice(None), *random_box(case.channels.shape[1:], crop, rng))
    x, coarse, dose = case.channels[box][None].float(), case.coarse[box][None], case.dose[box][None]
    if rng.random() < flip_p:
        x, coarse, dose = flip_lr(x, ORGAN_CHANNELS.start, PAROTIDS), coarse.flip(-1), dose.flip(-1)
    # Padding lies outside the possible-dose mask (body channel 0) and adds nothing to the loss.
    zeros = [p for n, m in zip(reversed(dose.shape[2:]), reversed(crop)) for p in (0, m - n)]
    return pad_to_shape(x, crop)[0], F.pad(coarse, zeros), F.pad(dose, zeros)


def validate(net: DoseNet, cases: list[tuple[CachedCase, RefinerCase, float]]) -> dict:
    """Mean OpenKBP dose error (Gy) of the refined dose over whole validation cases."""
    device = next(net.parameters()).device
    errors = {}
    with torch.no_grad():
        for case, prepared, highest in cases:
            x, coarse = prepared.channels[None].float().to(device), prepared.coarse[None].to(device)
            refined = refined_dose(net.refiner, x, coarse)[0, 0].clamp_min(0).cpu() * highest
            dose = np.zeros(case.body.shape, np.float32)
            dose[prepared.box] = refined.numpy()
            errors[case.case_id] = openkbp_dose_error(case.dose, dose, case.body, mask_prediction=True)
    return {"dose_score": float(np.mean(list(errors.values()))), "per_case": errors}


def train_dose_refiner(
    train_paths: list[Path], val_paths: list[Path], run: RunFolder, config: RefinerTrainConfig,
    resume: bool = True, device: str | torch.device = "cpu", on_case=None,
) -> dict:
    """Train the refiner of ``config.base`` in one process; ``best.pt`` is the refined dose model."""
    check_config(config)
    if distributed.world_size() > 1:
        raise InputError("train dose-refiner runs in one process (a small head: start it without torchrun)")
    device = resolve_device(device)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    base = load_dose_model(config.base, device)
    net = refined_network(base, config.width).to(device)
    optimisation = Optimisation(net.refiner, config.lr, config.weight_decay, config.steps)
    step, best = 0, math.inf
    state = run.load_checkpoint() if resume else None
    if state is not None:
        step, best = optimisation.restore(state)
    completion = load_scm(config.completion_model) if config.prompt == "completed" else None
    scribble_rng = np.random.default_rng(config.seed)

    def prepared(case: CachedCase, rng: np.random.Generator | None) -> tuple[RefinerCase, float]:
        channels, highest = case_channels(case, config.prompt, rng, completion)
        return refiner_case(base, case, channels, highest), highest

    cases = []
    for path in train_paths:
        case = load_cached(path)
        if case.dose is None:
            continue
        cases.append(prepared(case, scribble_rng)[0])
        if on_case:
            on_case(case.case_id)
    if not cases:
        raise ValueError("no training case has a dose")
    # Validation from scribbles at the evaluation's sparse setting (rng None), as `train dose` does.
    val_cases = [(case, *prepared(case, None)) for case in map(load_cached, val_paths[: config.val_cases])]
    order = distributed.sample_order(len(cases), config.seed, start=step * config.batch)
    rng = np.random.default_rng([config.seed, step])
    run.write_config(config)
    # The base model's own metadata (what load_dose_checkpoint reads), and what the refiner was trained on.
    metadata = {"working_spacing_kji": list(base.working_spacing_kji), "domain": base.domain, "prompt": base.prompt,
                **({"crop": list(base.window)} if base.window else {}),
                "refiner": {"base": base.source, "prompt": config.prompt, "steps": config.steps}}
    running = RunningLosses()
    while step < config.steps:
        x, coarse, dose = (t.to(device) for t in random_batch(cases, order, config, rng))
        net.refiner.train()
        loss = masked_l1(net.refiner(x, coarse), dose, x[:, BODY_CHANNEL : BODY_CHANNEL + 1])
        optimisation.update(loss)
        step += 1
        running.add({"l1": loss})
        if step % config.log_every == 0:
            run.log(step, lr=optimisation.lr, **running.flush())
        if val_cases and (step % config.val_every == 0 or step == config.steps):
            net.refiner.eval()
            result = validate(net, val_cases)
            run.log(step, **{f"val_{k}": v for k, v in result.items()})
            if result["dose_score"] < best:
                best = result["dose_score"]
                run.save_best(net.state_dict(), net.config.to_dict(), {**metadata, "step": step, "val": result})
        if step % config.checkpoint_every == 0 or step == config.steps:
            run.save_checkpoint(optimisation.state(step, best))
    if not val_cases:
        run.save_best(net.state_dict(), net.config.to_dict(), {**metadata, "step": step})
    return {"step": step, "best_dose_score": best}

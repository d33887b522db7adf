"""Training of the dose network on cached OpenKBP-style cases (CT, structures, body mask, dose).

Every case is brought to the working grid once and kept in memory; each step takes random crops
of a batch of cases, mirrors some left-right, and minimises the L1 dose error inside the
possible-dose mask plus the ranking term max(0, mean D_OAR - mean D_PTV). Validation predicts
whole cases and scores them on the CT grid with the OpenKBP dose error.

``prompt="scribble"`` trains the scribbles-instead-of-masks baseline: the structure channels hold
simulated scribbles rather than the dense masks. ``prompt="completed"`` trains the dose stage of the
scribble-guided cascade: the structure channels hold what the completion network (``completion_model``)
makes of simulated scribbles, once per case, so the dose network learns the completion's errors it
will be given at inference (the dense masks' dose stays the target).

Under torchrun each rank draws its own share of the cases (:mod:`sparsert.training.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sparsert.completion.contract import competing_structures
from sparsert.completion.scm import load_scm, masks_from_probabilities, predict_probabilities
from sparsert.config_dicts import unfit_weights
from sparsert.dose.grid import as_batch, flip_lr, pad_to_shape, to_ct_grid, to_working, working_shape
from sparsert.dose.inputs import BODY_CHANNEL, ORGAN_CHANNELS, TARGET_CHANNEL, automatic_body, checked_roles, structure_channels
from sparsert.dose.predict import PAROTIDS, body_statistics, load_dose_model, network_dose
from sparsert.losses.dose import dose_losses
from sparsert.metrics.dose import openkbp_dose_error
from sparsert.models.dose_rmt import DoseNet, DoseNetConfig
from sparsert.models.scm import SCMNet
from sparsert.preprocessing.ct import WIDE_WINDOW_HU
from sparsert.roles import highest_prescription
from sparsert.scribbles.simulate import EVAL_SCRIBBLES
from sparsert.training import distributed
from sparsert.training.cache import CachedCase, load_cached
from sparsert.training.optimisation import Optimisation, RunningLosses
from sparsert.training.run import RunFolder
from sparsert.training.scm import simulate_for, training_scribble_options


@dataclass
class DoseTrainConfig:
    steps: int = 3000
    lr: float = 2e-3
    weight_decay: float = 1e-5
    seed: int = 0
    batch: int = 2  # cases per step and process
    crop: tuple[int, int, int] = (48, 64, 64)
    working_spacing_kji: tuple[float, float, float] = (5.0, 7.8125, 7.8125)
    rank_weight: float = 1.0
    flip_p: float = 0.5
    prompt: str = "mask"  # "mask", "scribble" (baseline: scribbles as drawn) or "completed" (scribbles completed)
    completion_model: str = "scm"  # prompt "completed": the completion network (registry name or model file)
    init: str | None = None  # start from trained weights of the same network (registry name or model file)
    val_every: int = 250
    checkpoint_every: int = 50
    log_every: int = 10
    val_cases: int = 6
    threads: int = 2
    mixed_precision: bool = True  # bf16 autocast on GPUs (not on the CPU)
    # > 0: decay of an exponential moving average of the weights, which is validated and kept instead
    # of the last step's weights (fine-tuning on completed scribbles over-fits one draw of completions)
    weight_average: float = 0.0
    model: DoseNetConfig = field(default_factory=DoseNetConfig)


@dataclass
class WorkingCase:
    case_id: str
    channels: torch.Tensor  # (C, D, H, W) on the working grid
    dose: torch.Tensor  # (1, D, H, W) dose / highest prescription
    highest_gy: float


PROMPTS = ("mask", "scribble", "completed")


def case_channels(
    case: CachedCase, prompt: str = "mask", rng: np.random.Generator | None = None, completion: SCMNet | None = None,
) -> tuple[np.ndarray, float]:
    """Input channels of a cached case on its CT grid, and its highest prescription (Gy).

    ``rng`` draws training scribbles of varied density and style; without it the scribbles are the
    evaluation's sparse setting. ``completion`` is the network of ``prompt="completed"``."""
    masks = {name: case.masks[k] for k, name in enumerate(case.names)}
    if prompt in ("scribble", "completed"):
        options = training_scribble_options(rng) if rng is not None else EVAL_SCRIBBLES
        everything = list(range(len(case.names)))
        stack, background = simulate_for(case, everything, rng or np.random.default_rng(0), **options)
        if prompt == "completed":
            if completion is None:
                raise ValueError("prompt 'completed' needs the completion network")
            stack = completed_masks(completion, case, stack, background)
        masks = {name: stack[k] for k, name in enumerate(case.names)}
    elif prompt != "mask":
        raise ValueError(f"prompt must be one of {', '.join(PROMPTS)}, got {prompt!r}")
    return channels_from_masks(case, masks)


def completed_masks(net: SCMNet, case: CachedCase, scribbles: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(K, D, H, W) masks completed from ``scribbles`` of every structure of ``case`` as at inference
    (averaged with the mirrored pass, thresholded, the overlap rule applied); float32 so that every
    machine completes alike."""
    probs = predict_probabilities(net, case.image, scribbles, background, case.spacing_kji, flips=True,
                                  precision="float32")
    return masks_from_probabilities(probs, scribbles, background, competing_structures(case.names, scribbles))


def channels_from_masks(case: CachedCase, masks: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """Input channels of a cached case with the given structure masks (name -> mask on its CT grid)."""
    roles = checked_roles(case.names)
    channels = np.concatenate([case.image, structure_channels(masks, roles, case.body.shape), case.body[None].astype(np.float32)])
    return channels, float(highest_prescription(roles))


def working_case(
    case: CachedCase, config: DoseTrainConfig, rng: np.random.Generator | None = None, completion: SCMNet | None = None,
) -> WorkingCase:
    channels, highest = case_channels(case, config.prompt, rng, completion)
    return to_working_case(case, as_batch(channels), highest, config.working_spacing_kji)


def to_working_case(case: CachedCase, channels: torch.Tensor, highest: float, working_spacing_kji) -> WorkingCase:
    """(1, C, *ct_shape) channels of ``case`` and its dose, brought to the working grid."""
    shape = working_shape(case.body.shape, case.spacing_kji, working_spacing_kji)
    x = to_working(channels, shape)[0]
    dose = to_working(as_batch(case.dose / highest)[None], shape)[0]
    return WorkingCase(case.case_id, x, dose, highest)


def random_batch(
    cases: list[WorkingCase], order: Iterator[int], config: DoseTrainConfig, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of the next ``config.batch`` cases of ``order``, some mirrored left-right."""
    crops = [random_crop(cases[next(order)], config.crop, config.flip_p, rng) for _ in range(config.batch)]
    return torch.cat([x for x, _ in crops]), torch.cat([y for _, y in crops])


def random_crop(
    case: WorkingCase, crop: tuple[int, int, int], flip_p: float, rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (1, C, *crop) crop of the channels and the matching (1, 1, *crop) dose, mirrored with
    probability ``flip_p``.

    A case smaller than the crop along an axis is padded up to it as inference pads: the padding lies
    outside the possible-dose mask (body channel 0) and so adds nothing to the losses, and every step
    trains the same number of cases whatever their sizes.
    """
    full = tuple(m // 8 * 8 for m in crop)
    box = random_box(case.channels.shape[1:], full, rng)
    x, y = case.channels[(slice(None), *box)][None], case.dose[(slice(None), *box)][None]
    if rng.random() < flip_p:
        x, y = flip_lr(x, ORGAN_CHANNELS.start, PAROTIDS), y.flip(-1)
    padded_y = y.new_zeros((1, 1, *full))
    padded_y[(slice(None), slice(None), *(slice(0, n) for n in y.shape[2:]))] = y
    return pad_to_shape(x, full)[0], padded_y


def random_box(shape, size, rng: np.random.Generator) -> tuple[slice, ...]:
    """A random box of ``size`` voxels inside ``shape`` (the whole axis where it is shorter)."""
    box = []
    for n, m in zip(shape, size):
        start = int(rng.integers(n - min(n, m) + 1))
        box.append(slice(start, start + min(n, m)))
    return tuple(box)


def validate(net: DoseNet, cases: list[tuple[CachedCase, WorkingCase]], config: DoseTrainConfig) -> dict:
    """Mean OpenKBP dose error (Gy) over whole validation cases (each with its prepared inputs), scored
    on the CT grid."""
    net.eval()
    errors = {}
    with torch.no_grad():
        for case, working in cases:
            errors[case.case_id] = case_dose_error(net, case, working, config.crop)
    net.train()
    return {"dose_score": float(np.mean(list(errors.values()))), "per_case": errors}


def case_dose_error(net: DoseNet, case: CachedCase, working: WorkingCase, window) -> float:
    """OpenKBP dose error (Gy) of the network's whole-case prediction from ``working``'s channels."""
    dose = network_dose(net, working.channels[None], window)
    dose = to_ct_grid(dose, case.body.shape)[0, 0].clamp_min(0).numpy() * working.highest_gy
    return openkbp_dose_error(case.dose, dose, case.body, mask_prediction=True)


def step_losses(net: DoseNet, x: torch.Tensor, y: torch.Tensor, rank_weight: float) -> dict[str, torch.Tensor]:
    return dose_losses(net(x), y, x[:, BODY_CHANNEL : BODY_CHANNEL + 1], x[:, TARGET_CHANNEL : TARGET_CHANNEL + 1],
                       x[:, ORGAN_CHANNELS].amax(1, keepdim=True), rank_weight)


def load_initial_weights(net: DoseNet, name_or_path: str) -> None:
    """Trained weights of the same network into ``net`` (their working grid may differ)."""
    start = load_dose_model(name_or_path)
    theirs, ours = start.net.config.to_dict(), net.config.to_dict()
    differ = [k for k in ours if theirs[k] != ours[k]]
    if differ:
        raise unfit_weights(name_or_path, theirs, ours, differ)
    net.load_state_dict(start.net.state_dict())


def training_domain(stats: list[dict[str, float]]) -> dict[str, list[float]]:
    return {key: [min(s[key] for s in stats), max(s[key] for s in stats)] for key in stats[0]}


def train_dose(
    train_paths: list[Path], val_paths: list[Path], run: RunFolder, config: DoseTrainConfig,
    resume: bool = True, device: str | torch.device = "auto", on_case=None,
) -> dict:
    device = distributed.setup(device)
    seed = distributed.seed_process(config.seed)
    torch.set_num_threads(config.threads)
    # Weights first: a starting model that does not fit is refused before minutes of loading cases.
    net = DoseNet(config.model).to(device)
    state = run.load_checkpoint() if resume else None
    if state is None and config.init:
        load_initial_weights(net, config.init)
    # After the starting weights: a weight average starts from them.
    optimisation = Optimisation(net, config.lr, config.weight_decay, config.steps, average_decay=config.weight_average)
    step, best = 0, math.inf
    if state is not None:
        step, best = optimisation.restore(state)
    # The scribbles are drawn alike on every rank: one training set, whatever the world size.
    scribble_rng = np.random.default_rng(config.seed)
    completion = load_scm(config.completion_model) if config.prompt == "completed" else None
    cases, stats = [], []
    for path in train_paths:
        case = load_cached(path)
        if case.dose is None:
            continue
        cases.append(working_case(case, config, scribble_rng, completion))
        stats.append(body_statistics(automatic_body(case.image[0] * WIDE_WINDOW_HU), case.spacing_kji))
        if on_case:
            on_case(case.case_id)
    if not cases:
        raise ValueError("no training case has a dose")
    domain = training_domain(stats)
    # Only rank 0 validates (and writes best.pt); the other ranks wait in the next step's all-reduce.
    # Validation inputs are prepared once; from scribbles at the evaluation's sparse setting.
    val_cases = []
    if distributed.is_main():
        val_cases = [(case, working_case(case, config, None, completion))
                     for case in map(load_cached, val_paths[: config.val_cases])]
    train_step = distributed.wrap(net, step_losses, device, mixed_precision=config.mixed_precision)
    order = distributed.sample_order(len(cases), config.seed, start=step * config.batch)
    rng = np.random.default_rng([seed, step])  # crops and flips: fresh but reproducible after a resume
    run.write_config(config)
    metadata = {"working_spacing_kji": list(config.working_spacing_kji), "crop": list(config.crop), "domain": domain,
                "prompt": config.prompt}
    net.train()
    running = RunningLosses()
    while step < config.steps:
        x, y = random_batch(cases, order, config, rng)
        losses = train_step(x.to(device), y.to(device), config.rank_weight)
        optimisation.update(losses["total"])
        step += 1
        running.add(losses)
        if step % config.log_every == 0:
            run.log(step, lr=optimisation.lr, **running.flush())
        if val_cases and (step % config.val_every == 0 or step == config.steps):
            kept = optimisation.result_model()
            result = validate(kept, val_cases, config)
            run.log(step, **{f"val_{k}": v for k, v in result.items()})
            if result["dose_score"] < best:
                best = result["dose_score"]
                run.save_best(kept.state_dict(), config.model.to_dict(), {**metadata, "step": step, "val": result})
        if step % config.checkpoint_every == 0 or step == config.steps:
            run.save_checkpoint(optimisation.state(step, best))
    if not val_cases:
        run.save_best(optimisation.result_model().state_dict(), config.model.to_dict(), {**metadata, "step": step})
    return distributed.finish(net, {"step": step, "best_dose_score": best})

"""Training of the scribble completion module on simulated scribbles.

Each step draws a case, a random subset of its structures and scribbles of a random style and
density (real users vary), crops a region around them and applies the switchable losses: dense
supervision where masks exist, partial cross-entropy on scribbles, compactness, separation and the
supervoxel boundary loss. Under torchrun each rank draws its own share of the cases
(:mod:`sparsert.training.distributed`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from sparsert.completion.contract import competing_structures
from sparsert.completion.scm import load_scm, masks_from_probabilities, predict_probabilities
from sparsert.completion.scm_forward import ROI_MARGIN_MM, SCMPass, margin_voxels, scm_pass
from sparsert.config_dicts import unfit_weights
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry
from sparsert.losses.completion import boundary_alignment, compactness, dense_bce_dice, partial_bce, separation
from sparsert.masks import bounding_box
from sparsert.metrics.segmentation import dice
from sparsert.models.scm import SCMConfig, SCMNet
from sparsert.scribbles.simulate import EVAL_SCRIBBLES, simulate_scribbles
from sparsert.training import distributed
from sparsert.training.cache import CachedCase, load_cached
from sparsert.training.optimisation import Optimisation, RunningLosses
from sparsert.training.run import RunFolder


@dataclass
class LossWeights:
    dense: float = 1.0
    partial_ce: float = 1.0
    compactness: float = 0.1
    separation: float = 1.0  # at 0.1 the features collapsed (all centroids equal) within 40 steps
    boundary: float = 0.1


@dataclass
class SCMTrainConfig:
    steps: int = 20000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    roi_max: tuple[int, int, int] = (48, 96, 96)
    structure_keep_p: float = 0.8
    # Left-right mirroring of training crops (off by default, so the commands in the model cards keep
    # their meaning); structures are named by their scribbles, so a mirrored left parotid stays valid.
    flip_p: float = 0.0
    val_every: int = 500
    checkpoint_every: int = 50
    log_every: int = 10
    val_cases: int = 6
    threads: int = 2
    workers: int = 1
    mixed_precision: bool = True  # bf16 autocast on GPUs (not on the CPU)
    # Start from trained weights (registry name or model file); a head they lack starts at zero, a
    # narrower one is widened (model.head_channels) without changing what the network computes.
    init: str | None = None
    model: SCMConfig = field(default_factory=SCMConfig)
    losses: LossWeights = field(default_factory=LossWeights)


def _geometry(case: CachedCase) -> Geometry:
    sp = case.spacing_kji
    return Geometry(case.body.shape, (sp[2], sp[1], sp[0]), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def simulate_for(case: CachedCase, keep: list[int], rng: np.random.Generator, **options) -> tuple[np.ndarray, np.ndarray]:
    structures = Segmentation(_geometry(case), [Segment(case.names[k], case.masks[k]) for k in keep])
    scribbles = simulate_scribbles(structures, body_mask=case.body, seed=rng, **options)
    stack = np.stack([scribbles[case.names[k]].mask for k in keep])
    return stack, scribbles["Background"].mask


def training_scribble_options(rng: np.random.Generator) -> dict:
    style = rng.choice(["line", "mixed", "dot"], p=[0.45, 0.45, 0.1])
    return dict(
        slice_fraction=float(rng.uniform(0.15, 0.9)),
        style=str(style),
        line_width_vox=int(rng.choice([1, 1, 2])),
    )


class ScribbleSamples(IterableDataset):
    """Endless training samples: (image, scribbles, background, truth, boundary) crops."""

    def __init__(self, paths: list[Path], config: SCMTrainConfig, start: int = 0) -> None:
        """``start``: samples this rank trained on before (a resumed run)."""
        self.paths = paths
        self.config = config
        self.start = start
        self._cache: dict[Path, CachedCase] = {}

    def _case(self, path: Path) -> CachedCase:
        if path not in self._cache:
            self._cache[path] = load_cached(path)
        return self._cache[path]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # Every loader worker of every rank draws its own scribbles: reproducible, and fresh after a resume.
        rng = np.random.default_rng([self.config.seed, distributed.rank(), worker, self.start])
        order = distributed.sample_order(len(self.paths), self.config.seed, self.start)
        for index in islice(order, worker, None, workers):
            sample = self._sample(self.paths[index], rng)
            if sample is not None:
                yield sample

    def _sample(self, path: Path, rng: np.random.Generator) -> dict | None:
        case = self._case(path)
        if not case.names:
            return None
        keep = [k for k in range(len(case.names)) if rng.random() < self.config.structure_keep_p]
        keep = keep or [int(rng.integers(len(case.names)))]
        scribbles, background = simulate_for(case, keep, rng, **training_scribble_options(rng))
        shape = case.body.shape
        roi = bounding_box(scribbles.any(0), margin_voxels(ROI_MARGIN_MM, case.spacing_kji), shape)
        if roi is None:
            return None
        roi = _random_subbox(roi, self.config.roi_max, rng)
        crop = (slice(None),) + roi
        scr = scribbles[crop]
        if not scr.any():
            return None
        arrays = {
            "image": case.image[crop],
            "scribbles": scr,
            "background": background[roi],
            "truth": case.masks[keep][crop],
            "boundary": case.boundary[roi],
        }
        flip = self.config.flip_p > 0 and rng.random() < self.config.flip_p
        sample = {k: torch.from_numpy((a[..., ::-1] if flip else a).copy()) for k, a in arrays.items()}
        return {**sample, "spacing": torch.tensor(case.spacing_kji)}


def _random_subbox(box, max_size, rng) -> tuple[slice, slice, slice]:
    out = []
    for s, m in zip(box, max_size):
        n = s.stop - s.start
        if n <= m:
            out.append(s)
        else:
            start = s.start + int(rng.integers(n - m + 1))
            out.append(slice(start, start + m))
    return tuple(out)  # type: ignore[return-value]


def step_losses(net: SCMNet, sample: dict, weights: LossWeights) -> dict[str, torch.Tensor]:
    device = next(net.parameters()).device
    background = sample["background"].numpy()
    spacing = tuple(float(s) for s in sample["spacing"])
    full = tuple(slice(0, s) for s in background.shape)
    out = scm_pass(net, sample["image"].numpy(), sample["scribbles"].numpy(), background, spacing, roi=full, device=device)
    return completion_losses(out, sample["truth"].float().to(device), sample["boundary"].to(device), weights)


def completion_losses(out: SCMPass, truth: torch.Tensor, boundary: torch.Tensor, weights: LossWeights) -> dict[str, torch.Tensor]:
    """The switchable completion losses of one pass and their weighted ``total``; ``truth`` (K, D, H, W)
    and ``boundary`` (D, H, W) cover the pass's region of interest."""
    scr = out.scribbles[0]  # K + 1, D, H, W
    terms = {name: [] for name in ("dense", "partial_ce", "boundary")}
    for s in out.structures:
        crop = (slice(None),) + s.box
        k = s.index
        t = truth[k][s.box][None, None]
        positive = scr[k][s.box][None, None]
        others = torch.cat([scr[:k], scr[k + 1 : -1]]).amax(0)[s.box] if scr.shape[0] > 2 else torch.zeros_like(positive[0, 0])
        negative = torch.maximum(scr[-1][s.box], others * (1 - t[0, 0]))[None, None]
        terms["dense"].append(dense_bce_dice(s.logits, t))
        terms["partial_ce"].append(partial_bce(s.logits, positive, negative))
        terms["boundary"].append(boundary_alignment(torch.sigmoid(s.logits), boundary[crop[1:]][None, None]))
    losses = {name: torch.stack(v).mean() for name, v in terms.items() if v}
    feats = out.features.flatten(2)
    losses["compactness"] = compactness(feats, out.scribbles.flatten(2), out.centroids)
    losses["separation"] = separation(out.centroids, out.present)
    total = sum(getattr(weights, name) * value for name, value in losses.items() if getattr(weights, name) > 0)
    losses["total"] = total
    return losses


def idle_subnetwork(config: SCMTrainConfig) -> bool:
    """Whether the losses leave the encoder (no clustering, no cluster losses) or the decoder without gradients."""
    w = config.losses
    encoder_idle = not config.model.use_clustering and w.compactness <= 0 and w.separation <= 0
    return encoder_idle or max(w.dense, w.partial_ce, w.boundary) <= 0


def validate(net: SCMNet, cases: list[CachedCase], seed: int = 1234) -> dict:
    """Mean Dice per structure at the issue's sparse evaluation setting."""
    net.eval()
    per_structure: dict[str, list[float]] = {}
    for i, case in enumerate(cases):
        rng = np.random.default_rng(seed + i)
        keep = list(range(len(case.names)))
        scribbles, background = simulate_for(case, keep, rng, **EVAL_SCRIBBLES)
        probs = predict_probabilities(net, case.image, scribbles, background, case.spacing_kji, precision="float32")
        competitors = competing_structures([case.names[k] for k in keep], scribbles)
        masks = masks_from_probabilities(probs, scribbles, background, competitors)
        for k in keep:
            per_structure.setdefault(case.names[k], []).append(dice(masks[k], case.masks[k]))
    net.train()
    means = {name: float(np.mean(v)) for name, v in sorted(per_structure.items())}
    return {"mean_dice": float(np.mean([d for v in per_structure.values() for d in v])), "per_structure": means}


def load_initial_weights(net: SCMNet, name_or_path: str) -> None:
    """Trained weights into ``net``; they must come from the same network, less at most its
    full-resolution head (which then starts at zero) or with a narrower head (widened so that the
    network still computes what the weights did: see :func:`widened_head`)."""
    start = load_scm(name_or_path)
    theirs, ours = start.config.to_dict(), net.config.to_dict()
    differ = [k for k in ours if k != "head_channels" and theirs[k] != ours[k]]
    if start.head is not None and theirs["head_channels"] > ours["head_channels"]:
        differ.append("head_channels")
    if differ:
        raise unfit_weights(name_or_path, theirs, ours, differ)
    state = start.state_dict()
    if start.head is not None:
        state.update(widened_head(state, net.state_dict()))
    net.load_state_dict(state, strict=start.head is not None)


def widened_head(trained: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trained head's tensors grown to the target's (wider) shapes without changing its output.

    Trained values fill the leading block of each tensor; the new channels keep the target's own
    initial weights for what they compute but start with zero weight into the old channels (the
    output's among them), so they join in only as training moves those weights.
    """
    out = {}
    for name, value in trained.items():
        if not name.startswith("head.") or value.shape == target[name].shape:
            continue
        grown = target[name].clone()
        if grown.dim() > 1:  # a convolution (out, in, ...): new inputs feed old outputs through zeros
            grown[: value.shape[0], value.shape[1] :] = 0
        grown[tuple(slice(0, n) for n in value.shape)] = value
        out[name] = grown
    return out


def train_scm(
    train_paths: list[Path], val_paths: list[Path], run: RunFolder, config: SCMTrainConfig,
    resume: bool = True, device: str | torch.device = "auto",
) -> dict:
    device = distributed.setup(device)
    distributed.seed_process(config.seed)
    torch.set_num_threads(config.threads)
    net = SCMNet(config.model).to(device)
    optimisation = Optimisation(net, config.lr, config.weight_decay, config.steps)
    step, best = 0, -1.0
    state = run.load_checkpoint() if resume else None
    if state is not None:
        step, best = optimisation.restore(state)
    elif config.init:
        load_initial_weights(net, config.init)
    train_step = distributed.wrap(
        net, partial(step_losses, weights=config.losses), device,
        mixed_precision=config.mixed_precision, find_unused_parameters=idle_subnetwork(config),
    )
    run.write_config(config)
    # Only rank 0 validates (and writes best.pt); the other ranks wait in the next step's all-reduce.
    val_cases = [load_cached(p) for p in val_paths[: config.val_cases]] if distributed.is_main() else []
    loader = DataLoader(
        ScribbleSamples(train_paths, config, start=step), batch_size=None, num_workers=config.workers,
        persistent_workers=config.workers > 0, prefetch_factor=4 if config.workers else None,
    )
    net.train()
    running = RunningLosses()
    for sample in loader:
        if step >= config.steps:
            break
        losses = train_step(sample)
        optimisation.update(losses["total"])
        step += 1
        running.add(losses)
        if step % config.log_every == 0:
            run.log(step, lr=optimisation.lr, **running.flush())
        if distributed.is_main() and (step % config.val_every == 0 or step == config.steps):
            result = validate(net, val_cases)
            run.log(step, **{f"val_{k}": v for k, v in result.items()})
            if result["mean_dice"] > best:
                best = result["mean_dice"]
                run.save_best(net.state_dict(), config.model.to_dict(), {"step": step, "val": result})
        if step % config.checkpoint_every == 0 or step == config.steps:
            run.save_checkpoint(optimisation.state(step, best))
    return distributed.finish(net, {"step": step, "best_mean_dice": best})

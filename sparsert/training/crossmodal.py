"""Training of the cross-modal tumour network from scribbles, and its comparisons.

One trainer serves every experiment of the issue as a configuration variant (:data:`VARIANTS`):
the full method (CmFNet with partial cross-entropy, intra-modal gated CRF and inter-modal
consistency), the loss ablations (SSL: scribbles only; +IMR; +IMC), the fusion ablations (no CFF,
no CFE), the CT-only model, the partial-CE baseline on channel-stacked CT+MR, and the fully
supervised single-branch network on dense masks. Cases are split by patient into folds (the same
folds as the click-refinement models); a run trains on all folds but one.

Scribbles are fixed per training case (as a real annotated set is): simulated once from the dense
mask with the project's generator (or read from ``<case>.seg.nrrd`` files drawn on the CT grid),
with background strokes, the automatic erosion-based background, or both.

Under torchrun each rank draws its own share of the cases and its own patches; the scribbles are the
same on every rank (:mod:`sparsert.training.distributed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from sparsert.crossmodal.inference import predict_probability
from sparsert.crossmodal.preprocess import PreprocessConfig
from sparsert.data.sts import GTV
from sparsert.errors import InputError
from sparsert.io.segmentation import BACKGROUND, Segment, Segmentation
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import Geometry
from sparsert.losses.completion import dense_bce_dice
from sparsert.losses.crossmodal import consistency_loss, gated_crf_loss, scribble_loss
from sparsert.masks import largest_component
from sparsert.metrics.segmentation import dice
from sparsert.models.cmfnet import CmFNetConfig, build_network
from sparsert.scribbles import BACKGROUND_NAME, automatic_background, simulate_scribbles
from sparsert.training import distributed
from sparsert.training.crossmodal_cache import CrossModalCase, load_case
from sparsert.training.optimisation import Optimisation, RunningLosses
from sparsert.training.run import RunFolder

SUPERVISION = ("scribbles", "dense")
BACKGROUND_MODES = ("strokes", "automatic", "both")


@dataclass
class ScribbleConfig:
    source: str = "simulated"  # or a folder of <case>.seg.nrrd scribbles (tumour + "Background") on the CT grid
    slice_fraction: float = 0.3  # about 0.3-1 % of the working volume scribbled (tumour and background)
    style: str = "line"
    line_width_vox: int = 1
    background: str = "strokes"  # "strokes", "automatic" (every voxel beyond a margin), or "both"
    automatic_margin_mm: float = 40.0  # beyond the farthest STS tumour voxel from its scribbles


@dataclass
class CRFConfig:
    radius: int = 3  # in-plane neighbourhood, voxels
    sigma_xy_mm: float = 6.0
    sigma_ct: float = 0.1  # CT input units (0..1 over the HU window): 40 HU with the default window
    sigma_mr: float = 0.3  # MR z-score units


@dataclass
class LossConfig:
    supervision: str = "scribbles"  # "scribbles" (partial CE) or "dense" (fully supervised comparison)
    balanced: bool = True  # partial CE: tumour and background scribbles weigh the same in total
    lambda_ct: float = 0.2  # intra-modal regularisation: gated CRF driven by the CT, on y_ct
    lambda_mr: float = 0.2  # ... driven by the MR, on y_mr
    alpha_ct: float = 0.8  # inter-modal consistency ||y_mm - y_ct||^2
    alpha_mr: float = 0.8  # ... ||y_mm - y_mr||^2
    crf: CRFConfig = field(default_factory=CRFConfig)


@dataclass
class AugmentConfig:
    """Patch augmentation beyond the random flips (off in the v1 recipe)."""

    intensity: bool = False  # each modality scaled by 1 +- 0.1 and shifted by +- 0.1, each half the time
    affine: bool = False  # rotation (+- 15 degrees about the axial axis, +- 6 about the others) and scaling +- 10 %, half the time


@dataclass
class CrossModalTrainConfig:
    variant: str = "cmfnet"
    steps: int = 6000
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 2  # patches per step and process
    patch: tuple[int, int, int] = (32, 64, 64)  # (k, j, i) working-grid voxels, multiples of 16
    foreground_p: float = 0.7  # share of patches centred on a tumour scribble
    folds: int = 5  # cross-validation by patient (sparsert.training.folds.fold_split)
    fold: int | None = 0  # held-out fold; None: every case trains (nothing held out)
    seed: int = 0
    val_every: int = 250
    checkpoint_every: int = 50
    log_every: int = 10
    threads: int = 2
    mixed_precision: bool = True  # bf16 autocast on GPUs (not on the CPU)
    # > 0: decay of an exponential moving average of the weights, which is validated and kept instead
    weight_average: float = 0.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: CmFNetConfig = field(default_factory=CmFNetConfig)
    preprocessing: PreprocessConfig = field(default_factory=PreprocessConfig)
    scribbles: ScribbleConfig = field(default_factory=ScribbleConfig)
    losses: LossConfig = field(default_factory=LossConfig)


_NO_REGULARISATION = {"losses.lambda_ct": 0.0, "losses.lambda_mr": 0.0, "losses.alpha_ct": 0.0, "losses.alpha_mr": 0.0}
# Experiment name -> settings applied over the defaults (and over a YAML file; --set goes last).
VARIANTS: dict[str, dict[str, object]] = {
    "cmfnet": {},
    "ssl": dict(_NO_REGULARISATION),
    "imr": {"losses.alpha_ct": 0.0, "losses.alpha_mr": 0.0},
    "imc": {"losses.lambda_ct": 0.0, "losses.lambda_mr": 0.0},
    "no-cff": {"model.use_cff": False},
    "no-cfe": {"model.use_cfe": False},
    "ct-only": {"preprocessing.ct_only": True},
    "stacked-pce": {"model.architecture": "stacked", **_NO_REGULARISATION},
    "full-supervision": {"model.architecture": "stacked", "losses.supervision": "dense", **_NO_REGULARISATION},
}


def variant_settings(name: str) -> dict[str, object]:
    if name not in VARIANTS:
        raise InputError(f"unknown variant '{name}' (variants: {', '.join(VARIANTS)})")
    return {"variant": name, **VARIANTS[name]}


def check_config(config: CrossModalTrainConfig) -> None:
    config.model.validate()
    losses = config.losses
    if losses.supervision not in SUPERVISION:
        raise InputError(f"losses.supervision '{losses.supervision}' unknown (choose {', '.join(SUPERVISION)})")
    if config.scribbles.background not in BACKGROUND_MODES:
        raise InputError(
            f"scribbles.background '{config.scribbles.background}' unknown (choose {', '.join(BACKGROUND_MODES)})"
        )
    regularised = any(w > 0 for w in (losses.lambda_ct, losses.lambda_mr, losses.alpha_ct, losses.alpha_mr))
    if config.model.architecture != "cmfnet" and regularised:
        raise InputError(
            f"the {config.model.architecture} network has no CT and MR outputs for the intra-/inter-modal losses: "
            "set losses.lambda_* and losses.alpha_* to 0"
        )
    multiple = config.model.size_multiple
    if any(p % multiple for p in config.patch):
        raise InputError(f"patch {tuple(config.patch)} must be multiples of {multiple} (the MR branch down-samples 4 times)")
    if config.fold is not None and not 0 <= config.fold < config.folds:
        raise InputError(f"fold {config.fold} out of range for {config.folds} folds (0..{config.folds - 1})")


@dataclass
class TrainingCase:
    case: CrossModalCase
    foreground: np.ndarray  # tumour scribbles, bool
    background: np.ndarray  # background scribbles (and/or automatic background), bool


def case_scribbles(case: CrossModalCase, config: ScribbleConfig, rng: np.random.Generator) -> TrainingCase:
    """The case's fixed scribbles on the working grid."""
    if config.source == "simulated":
        structures = Segmentation(case.geometry, [Segment(GTV, case.mask)])
        drawn = simulate_scribbles(
            structures, slice_fraction=config.slice_fraction, style=config.style,
            line_width_vox=config.line_width_vox, body_mask=case.body, seed=rng,
        )
        foreground, strokes = drawn[GTV].mask, drawn[BACKGROUND_NAME].mask
    else:
        foreground, strokes = scribbles_from_file(Path(config.source) / f"{case.case_id}.seg.nrrd", case.geometry)
    if config.background == "automatic":
        background = automatic_background(foreground, case.geometry, margin_mm=config.automatic_margin_mm)
    elif config.background == "both":
        background = strokes | automatic_background(foreground, case.geometry, margin_mm=config.automatic_margin_mm)
    else:
        background = strokes
        if not background.any():
            raise InputError(
                f"{config.source if config.source != 'simulated' else case.case_id}: no background scribbles; "
                "draw some or set scribbles.background=automatic"
            )
    return TrainingCase(case, foreground, background & ~foreground)


def scribbles_from_file(path: Path, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Tumour (every non-background segment) and background scribbles of a file, on ``geometry``."""
    return scribbles_on_grid(read_segmentation(path), geometry, str(path))


def scribbles_on_grid(scribbles: Segmentation, geometry: Geometry, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Tumour (every segment but ``Background``) and background scribbles, splatted onto ``geometry``."""
    background = scribbles.find(BACKGROUND)
    tumour = [s for s in scribbles.segments if s is not background and s.mask.any()]
    if not tumour:
        raise InputError(f"{name}: no tumour scribble (segments: {', '.join(scribbles.names) or 'none'})")
    foreground = splat(np.logical_or.reduce([s.mask for s in tumour]), scribbles.geometry, geometry)
    if not foreground.any():
        raise InputError(f"{name}: the tumour scribbles lie outside the region the network sees (the MR field of view)")
    strokes = np.zeros(geometry.shape, bool)
    if background is not None:
        strokes = splat(background.mask, scribbles.geometry, geometry)
    return foreground, strokes


def splat(mask: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """``mask`` on ``target``: each voxel marks the target voxel nearest to it in physical space.

    Unlike resampling, a one-voxel stroke drawn on a finer grid never falls between target voxels.
    """
    ijk = np.argwhere(mask)[:, ::-1].T
    points = source.ijk_to_lps() @ np.vstack([ijk, np.ones(ijk.shape[1])])
    i, j, k = np.round(np.linalg.solve(target.ijk_to_lps(), points)[:3]).astype(int)
    inside = (k >= 0) & (k < target.shape[0]) & (j >= 0) & (j < target.shape[1]) & (i >= 0) & (i < target.shape[2])
    out = np.zeros(target.shape, bool)
    out[k[inside], j[inside], i[inside]] = True
    return out


class PatchSampler:
    """Random training patches of the cases in the order ``order`` (a tumour-scribble centre with
    probability ``foreground_p``), flipped at random and augmented as ``config.augment`` says."""

    IMAGES = ("ct", "mr")
    MASKS = ("mr_valid", "mask", "foreground", "background", "inside")

    def __init__(
        self, cases: list[TrainingCase], config: CrossModalTrainConfig, order: Iterator[int], rng: np.random.Generator,
    ) -> None:
        self.cases = cases
        self.order = order
        self.patch = tuple(config.patch)
        self.foreground_p = config.foreground_p
        self.augment = config.augment
        self.rng = rng
        self.affine = patch_affine(int(rng.integers(2**31))) if config.augment.affine else None

    def sample(self) -> dict[str, np.ndarray]:
        item = self.cases[next(self.order)]
        c = item.case
        shape = c.ct.shape
        if self.rng.random() < self.foreground_p:
            points = np.argwhere(item.foreground)
            centre = points[self.rng.integers(len(points))]
        else:
            centre = np.array([self.rng.integers(s) for s in shape])
        box = []
        for x, n, p in zip(centre, shape, self.patch):
            start = int(np.clip(x - p // 2, 0, max(0, n - p)))
            box.append(slice(start, min(n, start + p)))
        arrays = {
            "ct": c.ct, "mr": c.mr, "mr_valid": c.mr_valid, "mask": c.mask,
            "foreground": item.foreground, "background": item.background,
            "inside": np.ones(shape, bool),
        }
        flips = [axis for axis in range(3) if self.rng.random() < 0.5]
        out = {}
        for name, array in arrays.items():
            crop = array[tuple(box)]
            pad = [(0, p - s) for p, s in zip(self.patch, crop.shape)]
            crop = np.pad(crop, pad)
            out[name] = np.flip(crop, flips).copy() if flips else crop
        if self.affine is not None:
            out = self.transformed(out)
        if self.augment.intensity:
            for name in self.IMAGES:
                if self.rng.random() < 0.5:
                    out[name] = out[name] * np.float32(1 + self.rng.uniform(-0.1, 0.1))
                if self.rng.random() < 0.5:
                    out[name] = out[name] + np.float32(self.rng.uniform(-0.1, 0.1))
        return out

    def transformed(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``arrays`` through one random affine transform: images linearly, masks by nearest voxel
        (a scribble stays a scribble; voxels brought in from outside the patch count as outside)."""
        images = np.stack([arrays[n] for n in self.IMAGES]).astype(np.float32)
        masks = np.stack([arrays[n] for n in self.MASKS]).astype(np.float32)
        moved = self.affine({"images": images, "masks": masks})
        images, masks = np.asarray(moved["images"]), np.asarray(moved["masks"]) >= 0.5
        return {**dict(zip(self.IMAGES, images)), **dict(zip(self.MASKS, masks))}

    def batch(self, size: int, device: torch.device) -> dict[str, torch.Tensor]:
        samples = [self.sample() for _ in range(size)]
        return {k: torch.from_numpy(np.stack([s[k] for s in samples])[:, None]).float().to(device) for k in samples[0]}


def patch_affine(seed: int):
    """MONAI's random affine on ``images`` (bilinear) and ``masks`` (nearest), zero outside."""
    from monai.transforms import RandAffined

    transform = RandAffined(
        ["images", "masks"], prob=0.5, rotate_range=(0.26, 0.1, 0.1), scale_range=(0.1, 0.1, 0.1),
        mode=("bilinear", "nearest"), padding_mode="zeros",
    )
    transform.set_random_state(seed=seed)
    return lambda data: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in transform(data).items()}


def step_losses(net, batch: dict[str, torch.Tensor], config: CrossModalTrainConfig, spacing_kji) -> dict[str, torch.Tensor]:
    losses_cfg = config.losses
    out = net(batch["ct"], batch["mr"])
    losses: dict[str, torch.Tensor] = {}
    if losses_cfg.supervision == "scribbles":
        losses["partial_ce"] = scribble_loss(out, batch["foreground"], batch["background"], losses_cfg.balanced)
    else:
        losses["dense"] = sum(dense_bce_dice(y, batch["mask"]) for y in out.values())
    total = next(iter(losses.values()))
    prob = {name: torch.sigmoid(y) for name, y in out.items()}
    crf = losses_cfg.crf
    # In CT-only mode the "MR" input is the windowed CT, compared on the CT's scale.
    sigma_mr = crf.sigma_ct if config.preprocessing.ct_only else crf.sigma_mr
    for modality, weight, sigma, valid in (
        ("ct", losses_cfg.lambda_ct, crf.sigma_ct, batch["inside"]),
        ("mr", losses_cfg.lambda_mr, sigma_mr, batch["inside"] * batch["mr_valid"]),
    ):
        if weight > 0:
            value = gated_crf_loss(
                prob[modality], batch[modality], spacing_kji, radius=crf.radius, sigma_xy_mm=crf.sigma_xy_mm,
                sigma_intensity=sigma, valid=valid,
            )
            losses[f"crf_{modality}"] = value
            total = total + weight * value
    if losses_cfg.alpha_ct > 0 or losses_cfg.alpha_mr > 0:
        losses["consistency"] = consistency_loss(
            prob["fused"], prob["ct"], prob["mr"], losses_cfg.alpha_ct, losses_cfg.alpha_mr
        )
        total = total + losses["consistency"]
    losses["total"] = total
    return losses


def validate(net, cases: list[CrossModalCase]) -> dict:
    """Dice of the fused output on the working grid (monitoring; ``evaluate crossmodal`` scores on the CT grid)."""
    net.eval()
    scores = {}
    for case in cases:
        prob = predict_probability(net, case.ct, case.mr)
        scores[case.case_id] = dice(largest_component(prob >= 0.5), case.mask)
    net.train()
    return {"mean_dice": float(np.mean(list(scores.values()))) if scores else float("nan"), "per_case": scores}


def train_crossmodal(
    train_paths: list[Path],
    val_paths: list[Path],
    run: RunFolder,
    config: CrossModalTrainConfig,
    *,
    split: dict[str, list[str]] | None = None,
    resume: bool = True,
    device: str | torch.device = "auto",
) -> dict:
    """Train one fold; ``best.pt`` holds the latest validated weights (never selected on held-out cases)."""
    check_config(config)
    device = distributed.setup(device)
    seed = distributed.seed_process(config.seed)
    torch.set_num_threads(config.threads)
    # Scribbles drawn alike on every rank: one annotated training set, whatever the world size.
    scribble_rng = np.random.default_rng(config.seed)
    cases = [case_scribbles(load_case(p), config.scribbles, scribble_rng) for p in train_paths]
    spacings = {c.case.geometry.spacing_kji for c in cases}
    if len(spacings) != 1:
        raise InputError(f"training cases are on different working spacings {sorted(spacings)}; rebuild the cache")
    spacing_kji = spacings.pop()
    # Only rank 0 validates (and writes best.pt); the other ranks wait in the next step's all-reduce.
    val_cases = [load_case(p) for p in val_paths] if distributed.is_main() else []
    net = build_network(config.model).to(device)
    optimisation = Optimisation(net, config.lr, config.weight_decay, config.steps, average_decay=config.weight_average)
    step = 0
    state = run.load_checkpoint() if resume else None
    if state is not None:
        step, _ = optimisation.restore(state)
    # A stage without convolutions leaves its PReLU unused.
    train_step = distributed.wrap(
        net, partial(step_losses, config=config, spacing_kji=spacing_kji), device,
        mixed_precision=config.mixed_precision, find_unused_parameters=0 in config.model.convs,
    )
    order = distributed.sample_order(len(cases), config.seed, start=step * config.batch_size)
    # Fresh but reproducible patches after a resume.
    sampler = PatchSampler(cases, config, order, np.random.default_rng([seed, step]))
    run.write_config(config)
    metadata = {
        "variant": config.variant, "fold": config.fold, "folds": config.folds,
        "preprocessing": config.preprocessing.to_dict(), "scribbles": asdict(config.scribbles), **(split or {}),
    }
    net.train()
    running = RunningLosses()
    result: dict = {}
    while step < config.steps:
        losses = train_step(sampler.batch(config.batch_size, device))
        optimisation.update(losses["total"])
        step += 1
        running.add(losses)
        if step % config.log_every == 0 or step == config.steps:
            run.log(step, lr=optimisation.lr, **running.flush())
        if distributed.is_main() and (step % config.val_every == 0 or step == config.steps):
            kept = optimisation.result_model()
            result = validate(kept, val_cases)
            run.log(step, **{f"val_{k}": v for k, v in result.items()})
            run.save_best(kept.state_dict(), config.model.to_dict(), {**metadata, "step": step, "val": result})
        if step % config.checkpoint_every == 0 or step == config.steps:
            run.save_checkpoint(optimisation.state(step))
    return distributed.finish(net, {"step": step, "val_mean_dice": result.get("mean_dice")})

"""Training of the click-refinement models: stage 1, stage 2, and the DeepGrow/DeepEdit-style baselines.

All styles use the same network configuration, Dice + BCE loss, augmentation and budget (``steps``
optimiser steps); one step is one optimiser update on one augmented case.

- ``initial`` (stage 1): image channels -> tumour probability.
- ``refine`` / ``two_stage`` (stage 2): per sample the frozen stage-1 model gives the starting
  probability, then 1..``max_interactions`` simulated clicks follow; *every* interaction is an
  optimiser step. The click is drawn from the current mask's errors (p proportional to the border
  distance); the network sees image + previous probability + click maps, where the previous
  probability is replaced by 0.5 (``NO_MEMORY``) everywhere with probability ``mask_dropout`` (mask dropout).
- ``refine`` / ``deepgrow``: the DeepGrow protocol. One network on image + click maps only. Per
  sample, clicks are simulated with the network in the loop without gradients (the first from an
  empty mask, so a positive click inside the tumour), then *one* optimiser step on the final click set.
- ``refine`` / ``deepedit``: as ``deepgrow``, but a ``click_free_share`` of the samples are trained
  with empty click maps (automatic segmentation), as DeepEdit does (MONAI Label trains it with
  ``deepgrow_probability_train = 0.4``, i.e. 60% click-free samples).

MONAI's ``monai.apps.deepgrow`` / ``monai.apps.deepedit`` transforms are not used for the baselines:
their click sampling weights voxels by ``exp(d) - 1`` of a chessboard distance in voxels and their
guidance maps are min-max normalised Gaussians of a sigma in voxels, kept as JSON point lists; using
them would give the baselines another click distribution and click encoding than the two-stage model,
so the comparison would mix protocol and encoding. The baselines here reproduce the DeepGrow and
DeepEdit *training protocols* on this module's clicks (:mod:`sparsert.interactive.clicks`).
Augmentation uses MONAI's RandAffined, RandFlipd, RandScaleIntensityd and RandShiftIntensityd; with
``channel_dropout`` a sample's non-reference channel (PET) is sometimes zeroed as well.

Under torchrun each rank draws its own share of the cases and simulates its own clicks; every optimiser
step averages the gradients over the ranks (:mod:`sparsert.training.distributed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sparsert.errors import InputError
from sparsert.evaluation.refine import evaluate_refinement
from sparsert.interactive.clicks import Click, click_maps, sample_click
from sparsert.losses.completion import dense_bce_dice
from sparsert.models.icr import NO_MEMORY, ICRModel, ICRNetConfig, ICRSpec, load_icr_model
from sparsert.training import distributed
from sparsert.training.icr_data import ICRCase, ICRDataConfig, augmentation, load_icr_case
from sparsert.training.optimisation import Optimisation, cosine
from sparsert.training.run import RunFolder

STAGES = ("initial", "refine")
STYLES = ("two_stage", "deepgrow", "deepedit")


@dataclass
class ICRTrainConfig:
    stage: str = "refine"
    style: str = "two_stage"  # refine stage only
    steps: int = 20000  # optimiser steps (the budget shared by all styles)
    lr: float = 3e-4
    weight_decay: float = 1e-5
    seed: int = 0
    n_folds: int = 5
    fold: int | None = 0  # held-out fold (validation only); None: every case trains
    max_interactions: int = 15
    mask_dropout: float = 0.2
    click_free_share: float = 0.6  # deepedit
    augment: bool = True
    # probability that a sample's non-reference channel (PET in PET+CT; one drawn at random if several)
    # is zeroed, so the network also learns the reference image's boundaries (low-uptake tumours)
    channel_dropout: float = 0.0
    # a trained model file of the same kind and network whose weights this training starts from (a warm
    # restart: longer training in several runs); a two-stage refinement file also brings its stage 1
    init: str | None = None
    click_radius_mm: float = 5.0
    click_sigma_mm: float = 2.0
    val_every: int = 500
    val_clicks: int = 5
    val_cases: int = 4
    select_on_val: bool = False  # False: best.pt holds the last weights (no selection on held-out data)
    # > 0: that many of the training patients are set aside instead, and best.pt is selected on them
    # (early stopping that never sees the held-out fold); the held-out fold is then not validated on.
    selection_cases: int = 0
    # > 0: decay of an exponential moving average of the weights, which is then validated and kept in
    # best.pt instead of the raw weights (steadier on a few training patients)
    weight_average: float = 0.0
    checkpoint_every: int = 50
    log_every: int = 10
    threads: int = 2
    mixed_precision: bool = True  # bf16 autocast on GPUs (not on the CPU)
    network: ICRNetConfig = field(default_factory=ICRNetConfig)
    data: ICRDataConfig = field(default_factory=ICRDataConfig)

    def spec(self) -> ICRSpec:
        kind = "initial" if self.stage == "initial" else self.style
        return ICRSpec(
            kind=kind, modalities=tuple(self.data.modalities), structure=self.data.structure,
            spacing=tuple(self.data.spacing), click_radius_mm=self.click_radius_mm,
            click_sigma_mm=self.click_sigma_mm, network=self.network,
        )

    def check(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"stage '{self.stage}' unknown (known: {', '.join(STAGES)})")
        if self.style not in STYLES:
            raise InputError(f"style '{self.style}' unknown (known: {', '.join(STYLES)})")
        multiple = self.network.size_multiple
        if any(s % multiple for s in self.data.size_kji):
            raise InputError(
                f"data.size_kji {tuple(self.data.size_kji)} must be multiples of {multiple} (the product of network.strides)"
            )
        if not 0.0 <= self.channel_dropout <= 1.0:
            raise InputError(f"channel_dropout must lie in [0, 1], got {self.channel_dropout}")
        if self.max_interactions < 1:
            raise InputError(f"max_interactions must be >= 1, got {self.max_interactions}")


class Samples:
    """Endless augmented (image, truth) pairs of cached cases held in memory, in the order ``order``."""

    def __init__(
        self, cases: list[ICRCase], config: ICRTrainConfig, order: Iterator[int], rng: np.random.Generator,
    ) -> None:
        if not cases:
            raise InputError("no training cases")
        self.cases, self.order, self.rng = cases, order, rng
        self.transform = augmentation(int(rng.integers(2**31))) if config.augment else None
        self.channel_dropout = config.channel_dropout

    def draw(self) -> tuple[ICRCase, np.ndarray, np.ndarray]:
        case = self.cases[next(self.order)]
        image, truth = case.image, case.truth
        if self.transform is not None:
            out = self.transform({"image": image, "label": truth[None].astype(np.float32)})
            image = np.asarray(out["image"], dtype=np.float32)
            truth = np.asarray(out["label"])[0] > 0.5
        if self.channel_dropout and image.shape[0] > 1 and self.rng.random() < self.channel_dropout:
            image = image.copy()
            image[self.rng.integers(1, image.shape[0])] = 0.0
        return case, image, truth


class Trainer:
    def __init__(self, config: ICRTrainConfig, device: torch.device, initial: Path | None, resuming: bool = False) -> None:
        """``initial``: the stage-1 model file of two-stage refinement (not needed when ``resuming``:
        the checkpoint holds the stage-1 weights)."""
        self.config = config
        self.device = device
        self.model = ICRModel(config.spec()).to(device)
        if config.init and not resuming:
            self._load_init(Path(config.init))
        if config.stage == "refine" and config.style == "two_stage":
            if initial is not None:
                self._load_stage1(initial)
            elif not resuming and not config.init:
                raise InputError("training the two-stage refinement needs a trained stage-1 model (--initial RUN/best.pt)")
            self.model.initial_net.requires_grad_(False)
        trained = self.model.initial_net if config.stage == "initial" else self.model.refine_net
        self.optimisation = Optimisation(self.model, config.lr, config.weight_decay, config.steps, trained.parameters(),
                                         average_decay=config.weight_average)
        self.train_step = distributed.wrap(self.model, step_loss, device, mixed_precision=config.mixed_precision)
        self.step = 0

    def train_mode(self) -> None:
        """Training mode, except a frozen stage-1 network (batch-norm statistics stay as trained)."""
        self.model.train()
        if self.config.stage == "refine" and self.model.initial_net is not None:
            self.model.initial_net.eval()

    def _load_init(self, path: Path) -> None:
        start = load_icr_model(path)
        spec = self.config.spec()
        if (start.spec.kind, start.spec.network, start.spec.modalities) != (spec.kind, spec.network, spec.modalities):
            raise InputError(
                f"init {path}: a '{start.spec.kind}' model on {', '.join(start.spec.modalities)}; this training needs a "
                f"'{spec.kind}' model on {', '.join(spec.modalities)} with the same network settings"
            )
        # The same kind and network have the same networks: a two-stage file brings its stage 1 as well.
        self.model.load_state_dict(start.state_dict())

    def _load_stage1(self, path: Path) -> None:
        stage1 = load_icr_model(path)
        if stage1.initial_net is None:
            raise InputError(f"{path}: has no stage-1 network (kind '{stage1.spec.kind}')")
        if stage1.spec.network != self.config.network or stage1.spec.modalities != tuple(self.config.data.modalities):
            raise InputError(f"{path}: stage-1 network or modalities differ from this configuration")
        self.model.initial_net.load_state_dict(stage1.initial_net.state_dict())

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return t[None, None].to(self.device) if t.ndim == 3 else t[None].to(self.device)

    def _update(
        self, image: torch.Tensor, truth: torch.Tensor, **clicks: torch.Tensor | None,
    ) -> tuple[float, torch.Tensor]:
        """One optimiser step on the loss of :func:`step_loss`; its loss value and logits."""
        loss, logits = self.train_step(image, truth, **clicks)
        self.optimisation.update(loss)
        self.step += 1
        return float(loss.detach()), logits

    def _maps(self, shape, clicks: list[Click], spacing) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        positive, negative = click_maps(shape, clicks, spacing, c.click_radius_mm, c.click_sigma_mm)
        return self._tensor(positive), self._tensor(negative)

    def sample_losses(self, image_np: np.ndarray, truth_np: np.ndarray, spacing, rng: np.random.Generator) -> list[float]:
        """Train on one augmented sample; returns the loss of each optimiser step taken."""
        image, truth = self._tensor(image_np), self._tensor(truth_np)
        c = self.config
        if c.stage == "initial" or (c.style == "deepedit" and rng.random() < c.click_free_share):
            return [self._update(image, truth)[0]]
        interactions = int(rng.integers(1, c.max_interactions + 1))
        if c.style == "two_stage":
            return self._two_stage(image, truth, truth_np, spacing, interactions, rng)
        return self._deepgrow(image, truth, truth_np, spacing, interactions, rng)

    def _two_stage(self, image, truth, truth_np, spacing, interactions: int, rng: np.random.Generator) -> list[float]:
        """Stage-1 start, then one optimiser step per simulated click, with mask dropout."""
        c = self.config
        with torch.no_grad():
            probability = torch.sigmoid(self.model.initial_logits(image))
        clicks: list[Click] = []
        losses = []
        for _ in range(interactions):
            if self.step >= c.steps:
                break
            click = sample_click(probability[0, 0].cpu().numpy() > 0.5, truth_np, spacing, rng)
            if click is None:
                break
            clicks.append(click)
            positive, negative = self._maps(truth_np.shape, clicks, spacing)
            previous = torch.full_like(probability, NO_MEMORY) if rng.random() < c.mask_dropout else probability
            loss, logits = self._update(image, truth, positive=positive, negative=negative, previous=previous)
            losses.append(loss)
            probability = torch.sigmoid(logits.detach().float())  # bf16 under autocast; numpy has no bf16
        return losses

    def _deepgrow(self, image, truth, truth_np, spacing, interactions: int, rng: np.random.Generator) -> list[float]:
        """DeepGrow protocol: clicks simulated with the network in the loop (no gradients), then one step."""
        prediction = np.zeros(truth_np.shape, bool)
        clicks: list[Click] = []
        for n in range(interactions):
            click = sample_click(prediction, truth_np, spacing, rng)
            if click is None:
                break
            clicks.append(click)
            if n < interactions - 1:
                positive, negative = self._maps(truth_np.shape, clicks, spacing)
                self.model.eval()  # simulated interactions are inference, as in MONAI's Interaction
                with torch.no_grad():
                    logits = self.model.refine_logits(image, None, positive, negative)
                self.train_mode()
                prediction = logits[0, 0].cpu().numpy() > 0
        positive, negative = self._maps(truth_np.shape, clicks, spacing)
        return [self._update(image, truth, positive=positive, negative=negative)[0]]


def step_loss(
    model: ICRModel, image: torch.Tensor, truth: torch.Tensor, positive: torch.Tensor | None = None,
    negative: torch.Tensor | None = None, previous: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice + BCE loss and logits: of refinement given click maps, else of stage 1 (or a click-free pass)."""
    if positive is None:
        logits = model.initial_logits(image)
    else:
        logits = model.refine_logits(image, previous, positive, negative)
    return dense_bce_dice(logits, truth), logits


def _crossed(before: int, after: int, every: int, last: int) -> bool:
    """Whether steps ``before`` -> ``after`` passed a multiple of ``every`` or reached ``last``
    (one sample may take several steps)."""
    return after // every > before // every or after == last > before


def validate(model: ICRModel, cases: list[ICRCase], clicks: int) -> dict:
    """Mean Dice at 0 and ``clicks`` clicks (interior protocol, whole-volume passes); ``model`` in eval mode."""
    max_clicks = 0 if model.spec.kind == "initial" else clicks
    result = evaluate_refinement(model, cases, max_clicks=max_clicks, protocol="interior", mode="whole")
    out = {"dice_0": result["dice_at"]["0"]["mean"]}
    if max_clicks:
        out[f"dice_{max_clicks}"] = float(result["dice_curve"][max_clicks])
    return out


def train_icr(
    train_paths: list[Path],
    val_paths: list[Path],
    run: RunFolder,
    config: ICRTrainConfig,
    initial: Path | None = None,
    resume: bool = True,
    device: str | torch.device = "auto",
) -> dict:
    """Train one model into ``run``; ``initial`` is the stage-1 model file (two-stage refinement only)."""
    config.check()
    device = distributed.setup(device)
    seed = distributed.seed_process(config.seed)
    torch.set_num_threads(config.threads)
    state = run.load_checkpoint() if resume else None
    trainer = Trainer(config, device, initial, resuming=state is not None)
    best = -1.0
    if state is not None:
        trainer.step, best = trainer.optimisation.restore(state)
    run.write_config(config)
    # Augmentation and clicks: fresh but reproducible after a resume.
    rng = np.random.default_rng([seed, trainer.step])
    cases = [load_icr_case(p) for p in train_paths]
    samples = Samples(cases, config, distributed.sample_order(len(cases), config.seed, trainer.step), rng)
    # Only rank 0 validates (and writes best.pt); the other ranks wait in the next step's all-reduce.
    val_cases = [load_icr_case(p) for p in val_paths[: config.val_cases]] if distributed.is_main() else []
    spec = config.spec()
    trainer.train_mode()
    running: list[float] = []
    last_val: dict = {}
    while trainer.step < config.steps:
        before = trainer.step
        case, image, truth = samples.draw()
        losses = trainer.sample_losses(image, truth, case.spacing_kji, rng)
        for step, loss in zip(range(before + 1, trainer.step + 1), losses):
            running.append(loss)
            if step % config.log_every == 0:
                lr = config.lr * cosine(step - 1, config.steps)  # the rate this step was taken with
                run.log(step, lr=lr, loss=float(np.mean(running)), case=case.case_id)
                running = []
        if val_cases and _crossed(before, trainer.step, config.val_every, config.steps):
            result = trainer.optimisation.result_model()
            result.eval()
            last_val = validate(result, val_cases, config.val_clicks)
            trainer.train_mode()
            run.log(trainer.step, **{f"val_{k}": v for k, v in last_val.items()})
            score = last_val.get(f"dice_{config.val_clicks}", last_val["dice_0"])
            if config.select_on_val and score > best:
                best = score
                run.save_best(result.state_dict(), spec.to_dict(), {"step": trainer.step, "val": last_val})
        if _crossed(before, trainer.step, config.checkpoint_every, config.steps):
            run.save_checkpoint(trainer.optimisation.state(trainer.step, best))
    if not config.select_on_val or best < 0:
        run.save_best(trainer.optimisation.result_model().state_dict(), spec.to_dict(),
                      {"step": trainer.step, "val": last_val, "selection": "last"})
    return distributed.finish(trainer.model, {"step": trainer.step, "val": last_val})

"""Networks of the two-stage interactive click refinement (2S-ICR) and its baselines.

- ``two_stage``: a stage-1 U-Net maps the image channels to a tumour probability; a separate
  stage-2 U-Net maps image channels + previous probability + positive and negative click maps to
  the refined probability. The probability is the only memory between clicks.
- ``deepgrow`` / ``deepedit``: one U-Net on image channels + click maps (no previous probability);
  the automatic result is that network with empty click maps.
- ``initial``: a stage-1 network alone (what ``train initial`` produces; it cannot refine).

A model file is the run folder's ``best.pt``: ``{"model": state_dict, "config": ICRSpec as a dict,
"metadata": ...}``. Several files averaged in probability form an :class:`Ensemble`, which also averages
with mirrored passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import UNet
from torch import nn

from sparsert.errors import InputError
from sparsert.config_dicts import from_dict
from sparsert.models.model_file import building_from, read_model_file
from sparsert.models.scm import crop_back, pad_to_multiple

CHECKPOINT_KIND = "click-refinement checkpoint"
KINDS = ("initial", "two_stage", "deepgrow", "deepedit")
# Stage 2's memory (previous probability) when there is none to give: what mask dropout feeds it in
# training, and what a click on a part the mask misses is refined from (the refinement session).
NO_MEMORY = 0.5


@dataclass
class ICRNetConfig:
    """A MONAI U-Net; the defaults are the paper's architecture."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (1, 2, 2, 2)
    num_res_units: int = 2
    norm: str = "instance"

    @property
    def size_multiple(self) -> int:
        """Input sizes must be multiples of this (the product of the strides)."""
        return int(np.prod(self.strides))


# The CPU option: half the channels, a stride at the first level, one residual unit (about 8x
# fewer operations than the paper's network on the same volume), and batch norm: in evaluation
# its statistics are fixed, so a region pass equals the whole-volume pass inside the pasted region
# (instance norm recomputes statistics per input, so a region sees other ones than the volume).
LIGHT_NETWORK = ICRNetConfig(channels=(8, 16, 32, 64, 128), strides=(2, 2, 2, 2), num_res_units=1, norm="batch")


@dataclass
class ICRSpec:
    """Everything besides the weights that inference needs to reproduce training's inputs."""

    kind: str = "two_stage"
    modalities: tuple[str, ...] = ("ct", "pet")
    structure: str = "GTV_Mass"  # what the model segments (the output segment's name)
    spacing: tuple[float, float, float] | None = (2.0, 2.0, 3.0)  # working grid (i, j, k) mm; None: native
    click_radius_mm: float = 5.0
    click_sigma_mm: float = 2.0
    network: ICRNetConfig = field(default_factory=ICRNetConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str | Path = "model config") -> "ICRSpec":
        try:
            spec = from_dict(cls, data, str(source))
        except TypeError as exc:
            raise InputError(f"{source}: not a click-refinement model configuration ({exc})") from None
        if spec.kind not in KINDS:
            raise InputError(f"{source}: unknown model kind '{spec.kind}' (known: {', '.join(KINDS)})")
        return spec


def build_unet(config: ICRNetConfig, in_channels: int) -> UNet:
    return UNet(
        spatial_dims=3,
        in_channels=in_channels,
        out_channels=1,
        channels=tuple(config.channels),
        strides=tuple(config.strides),
        num_res_units=config.num_res_units,
        norm=config.norm,
    )


class ICRModel(nn.Module):
    """The networks of one model; inputs are (B, C, D, H, W) tensors of any size (padded inside)."""

    def __init__(self, spec: ICRSpec) -> None:
        super().__init__()
        if spec.kind not in KINDS:
            raise InputError(f"unknown model kind '{spec.kind}' (known: {', '.join(KINDS)})")
        self.spec = spec
        n = len(spec.modalities)
        self.initial_net = build_unet(spec.network, n) if spec.kind in ("initial", "two_stage") else None
        self.refine_net = None
        if spec.kind != "initial":
            self.refine_net = build_unet(spec.network, n + (3 if spec.kind == "two_stage" else 2))

    @property
    def uses_previous(self) -> bool:
        return self.spec.kind == "two_stage"

    @property
    def can_refine(self) -> bool:
        return self.refine_net is not None

    def initial_logits(self, image: torch.Tensor) -> torch.Tensor:
        if self.initial_net is not None:
            return self.initial_net(image)
        empty = image.new_zeros((image.shape[0], 2) + tuple(image.shape[2:]))
        return self.refine_net(torch.cat([image, empty], dim=1))

    def refine_logits(
        self, image: torch.Tensor, previous: torch.Tensor | None, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        """``previous`` is only read by two-stage models (the others may pass None)."""
        if self.refine_net is None:
            raise InputError("this is a stage-1 (initial) model only: it cannot refine with clicks")
        parts = [image, previous, positive, negative] if self.uses_previous else [image, positive, negative]
        return self.refine_net(torch.cat(parts, dim=1))

    @torch.inference_mode()
    def initial_probability(self, image: torch.Tensor) -> torch.Tensor:
        return self._padded(self.initial_logits, image)

    @torch.inference_mode()
    def refine_probability(
        self, image: torch.Tensor, previous: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        return self._padded(self.refine_logits, image, previous, positive, negative)

    def _padded(self, forward, *inputs: torch.Tensor) -> torch.Tensor:
        multiple = self.spec.network.size_multiple
        padded = [pad_to_multiple(x, multiple)[0] for x in inputs]
        size = tuple(inputs[0].shape[-3:])
        return torch.sigmoid(crop_back(forward(*padded), size))


class Ensemble:
    """Members averaged in probability; every member sees the same previous probability and clicks.

    With ``flips`` each member's pass is also averaged with its pass on the inputs mirrored along the
    image's i axis (left-right on axial images; the networks were trained with flips on every axis):
    twice the network time, for Dice after 5 clicks a little higher and at 10 clicks the same on the
    cross-validated STS patients (the ``icr-sts-petct`` model card), so it is an option, off by default.
    """

    def __init__(self, members: Sequence[ICRModel], flips: bool = False) -> None:
        if not members:
            raise InputError("an ensemble needs at least one model")
        first = members[0].spec
        for m in members[1:]:
            s = m.spec
            same = (s.modalities, s.spacing, s.click_radius_mm, s.click_sigma_mm) == (
                first.modalities, first.spacing, first.click_radius_mm, first.click_sigma_mm,
            )
            if not same:
                raise InputError(
                    "ensemble members must share modalities, working spacing and click encoding; "
                    f"got {first.modalities}/{first.spacing} and {s.modalities}/{s.spacing}"
                )
        self.members = list(members)
        self.flips = flips
        self.spec = first

    @property
    def can_refine(self) -> bool:
        return all(m.can_refine for m in self.members)

    @property
    def uses_previous(self) -> bool:
        return any(m.uses_previous for m in self.members)

    def initial_probability(self, image: torch.Tensor) -> torch.Tensor:
        return self._average(ICRModel.initial_probability, image)

    def refine_probability(
        self, image: torch.Tensor, previous: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
    ) -> torch.Tensor:
        return self._average(ICRModel.refine_probability, image, previous, positive, negative)

    def _average(self, probability, *inputs: torch.Tensor) -> torch.Tensor:
        passes = [probability(m, *inputs) for m in self.members]
        if self.flips:
            mirrored = [x.flip(-1) for x in inputs]
            passes += [probability(m, *mirrored).flip(-1) for m in self.members]
        return torch.stack(passes).mean(0)


ClickModel = ICRModel | Ensemble


def load_icr_model(path: str | Path, device: str | torch.device = "cpu") -> ICRModel:
    """A model written by the trainer (``best.pt``), in evaluation mode on ``device``."""
    path = Path(path)
    data = read_model_file(path, CHECKPOINT_KIND)
    with building_from(path, CHECKPOINT_KIND):
        model = ICRModel(ICRSpec.from_dict(data["config"], path))
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise InputError(f"{path}: weights do not fit the configured network ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


def load_click_model(paths: Sequence[str | Path], device: str | torch.device = "cpu", flips: bool = False) -> ClickModel:
    """One model, or the ensemble of several model files; ``flips`` adds the mirrored passes (:class:`Ensemble`)."""
    models = [load_icr_model(p, device) for p in paths]
    return models[0] if len(models) == 1 and not flips else Ensemble(models, flips)

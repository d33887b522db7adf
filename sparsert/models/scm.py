"""The Scribble Completion Module (SCM) network.

A lightweight 3D encoder gives voxel features; each scribbled class k gets a centroid c_k, the mean
of the l2-normalised features over its scribble voxels; cosine similarity to the centroids divided by
a temperature gives coarse class logits; a lightweight decoder refines them, one structure at a time,
into a dense mask. Classes are defined by their centroids, so one trained model completes any set of
structures, including names it never saw. Output is multi-label: one independent mask per structure
(targets overlap organs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.nets import UNet
from torch import nn

from sparsert.config_dicts import from_dict


@dataclass
class SCMConfig:
    in_channels: int = 2  # CT wide window + soft-tissue window
    feature_channels: int = 16
    encoder_channels: tuple[int, ...] = (8, 16, 32, 64)
    decoder_channels: tuple[int, ...] = (8, 16, 32)
    encoder_res_units: int = 1
    decoder_res_units: int = 0  # the decoder runs once per structure: kept shallow for CPU speed
    temperature: float = 0.1
    use_clustering: bool = True  # ablation: without it the decoder sees only scribbles and the image
    distance_scale_mm: float = 30.0  # scribble distance maps are divided by this
    # Channels of the full-resolution head after the decoder (0: none). The MONAI U-Net's first layer
    # strides, so without it every mask edge comes from half-resolution features.
    head_channels: int = 16

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SCMConfig":
        """A config from saved or command-line values (their lists become tuples)."""
        return from_dict(cls, values, "scribble-completion network config")


# Per-structure decoder inputs in the order the decoder's first layer was trained on (part of the
# weight format): best rival similarity, own scribble, background scribble, other structures'
# scribbles, distance to own scribble, the image channels, own similarity.
_DECODER_FIXED_INPUTS = 6


class SCMNet(nn.Module):
    def __init__(self, config: SCMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SCMConfig()
        self.encoder = UNet(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.feature_channels,
            channels=config.encoder_channels,
            strides=(2,) * (len(config.encoder_channels) - 1),
            num_res_units=config.encoder_res_units,
        )
        self.decoder = UNet(
            spatial_dims=3,
            in_channels=_DECODER_FIXED_INPUTS + config.in_channels,
            out_channels=1,
            channels=config.decoder_channels,
            strides=(2,) * (len(config.decoder_channels) - 1),
            num_res_units=config.decoder_res_units,
        )
        head_inputs = _DECODER_FIXED_INPUTS + config.in_channels + 1  # the decoder's inputs and its logit
        self.head = FullResolutionHead(head_inputs, config.head_channels) if config.head_channels else None
        prelus_in_input_type(self)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """l2-normalised voxel features, (B, C, D, H, W), in float32."""
        return unit_channels(self.encoder(image))

    @staticmethod
    def centroids(features: torch.Tensor, scribbles: torch.Tensor) -> torch.Tensor:
        """Per-class centroids (B, K, C) from scribbles (B, K, D, H, W), each a unit vector.

        The mean is taken over the already-normalised voxel features, then normalised itself so that
        the dot product with a voxel feature is a cosine similarity.
        """
        weights = scribbles.flatten(2).to(features.dtype)  # B, K, N
        counts = weights.sum(-1, keepdim=True).clamp_min(1.0)
        # (B, C, N) @ (B, N, K) reads both operands in place; the einsum it replaces copied the features.
        means = torch.bmm(features.flatten(2), weights.transpose(1, 2)).transpose(1, 2) / counts
        return F.normalize(means, dim=-1)

    def similarities(self, features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """Coarse class logits: cosine similarity / temperature, (B, K, D, H, W)."""
        sims = torch.bmm(centroids.to(features.dtype), features.flatten(2)) / self.config.temperature
        return sims.view(sims.shape[:2] + features.shape[2:])

    def decode(
        self,
        image: torch.Tensor,
        own_similarity: torch.Tensor,
        rival_similarity: torch.Tensor,
        own_scribble: torch.Tensor,
        background_scribble: torch.Tensor,
        other_scribbles: torch.Tensor,
        own_distance: torch.Tensor,
    ) -> torch.Tensor:
        """Dense logit of one structure per batch item; every input is (N, 1|C, D, H, W) on one crop."""
        if not self.config.use_clustering:
            own_similarity = torch.zeros_like(own_similarity)
            rival_similarity = torch.zeros_like(rival_similarity)
        x = torch.cat(
            [rival_similarity, own_scribble, background_scribble, other_scribbles, own_distance, image, own_similarity],
            dim=1,
        )
        logits = self.decoder(x)
        return logits if self.head is None else logits + self.head(torch.cat([x, logits], dim=1))


class FullResolutionHead(nn.Module):
    """A correction to the decoder's logit from full-resolution convolutions over its inputs and logit.

    The last layer starts at zero, so a head added to trained weights starts from their output.
    It runs channels-last: at full resolution it is most of the completion time, and a CPU's bfloat16
    convolutions take about a third of their time so. Its normalisation is instance normalisation
    written as a group normalisation with one group per channel (the same values, no weights), which
    keeps channels-last where torch's instance normalisation returns the channels-first layout.
    """

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        per_channel = ("GROUP", {"num_groups": channels, "affine": False})
        self.body = nn.Sequential(
            Convolution(3, in_channels, channels, kernel_size=3, act="PRELU", norm=per_channel),
            Convolution(3, channels, channels, kernel_size=3, act="PRELU", norm=per_channel),
        )
        self.out = nn.Conv3d(channels, 1, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x.contiguous(memory_format=torch.channels_last_3d)))


class InputTypePReLU(nn.PReLU):
    """PReLU computed in its input's number type (the same weight).

    Under a CPU's bfloat16 autocast the weight stays float32, and torch's PReLU of a bfloat16 input with a
    float32 weight takes a mixed-type path about three times slower than with a bfloat16 weight (about
    0.1 s of the largest validation case's 1.5 s completion).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.weight.to(x.dtype))


def prelus_in_input_type(module: nn.Module) -> None:
    """Replace every ``nn.PReLU`` under ``module`` by an :class:`InputTypePReLU` sharing its weight."""
    for name, child in module.named_children():
        if type(child) is nn.PReLU:
            replacement = InputTypePReLU(child.num_parameters)
            replacement.weight = child.weight
            setattr(module, name, replacement)
        else:
            prelus_in_input_type(child)


def unit_channels(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``x`` divided by its l2 norm over the channel axis (as ``F.normalize(x, dim=1)``), in float32.

    Written out because torch's vector norm over the channel axis of a 5D tensor is several times
    slower on a CPU than this sum of squares (0.44 s against 0.10 s for 16 x 80 x 160 x 160).
    """
    x = x.float()
    return x / x.square().sum(1, keepdim=True).sqrt().clamp_min(eps)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad the last three axes up to a multiple (U-Nets need it); returns the original size."""
    size = tuple(x.shape[-3:])
    target = [-(-s // multiple) * multiple for s in size]
    pad = []
    for s, t in reversed(list(zip(size, target))):
        pad += [0, t - s]
    return (F.pad(x, pad) if any(pad) else x), size  # type: ignore[return-value]


def crop_back(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    return x[..., : size[0], : size[1], : size[2]]

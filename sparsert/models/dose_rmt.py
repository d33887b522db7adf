"""Dose-prediction networks: the 3D Manhattan-retention transformer with structure-guided modulation.

The backbone follows RMT (Retentive Networks Meet Vision Transformers) in three dimensions: each
head's attention map is multiplied by ``gamma_h ** (|dz| + |dy| + |dx|)``, so nearby voxels count
more, with a different reach per head. Coarse stages attend over all their tokens; finer stages,
where that costs too much, attend along each axis in turn (the decomposed form, with ``gamma **
|d|`` on each axis). A local context term (a depthwise convolution of the values) is added as in RMT.

Structure-guided modulation multiplies every attention map, over its keys, by
``G = 2 * sigmoid(1 + a * M_PTV - b * M_OAR)`` with learnable positive ``a`` and ``b`` per block and
the masks resized to the stage, so attention is raised towards targets and lowered towards organs.

The same encoder-decoder with convolution blocks at every stage (``backbone="unet"``) is the 3D
U-Net baseline; ``cascade=True`` chains two of them, the second seeing the first's dose (the
OpenKBP-winning design); ``use_structures=False`` is the CT-only baseline.

The network works on a coarser grid than the CT's; ``refiner_width > 0`` adds :class:`DoseRefiner`,
a small convolution head that corrects the dose brought back to the CT grid at the CT's resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsert.config_dicts import from_dict


@dataclass
class DoseNetConfig:
    in_channels: int = 11
    widths: tuple[int, ...] = (8, 24, 48, 96)  # CPU budget: stage 0 runs at the full working resolution
    heads: int = 4
    depth: int = 2  # blocks per transformer stage
    transformer_stages: tuple[int, ...] = (2, 3)  # stages (0 = full working resolution) that are RMT
    full_attention_tokens: int = 1024  # stages with at most this many tokens attend over all of them
    backbone: str = "rmt"  # "rmt" or "unet" (convolutions only)
    decay: bool = True
    modulation: bool = True
    cascade: bool = False
    use_structures: bool = True  # False: the CT-only baseline (target and organ channels zeroed)
    target_channel: int = 2
    organ_channels: tuple[int, int] = (3, 10)  # [start, stop)
    refiner_width: int = 0  # > 0: a full-resolution refinement head of this width (DoseRefiner)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DoseNetConfig":
        return from_dict(cls, data, "dose network config")


class ConvBlock(nn.Module):
    """Two 3x3x3 convolutions with instance normalisation and a residual connection, run channels-last.

    The normalisation is written as a group normalisation with one group per channel (the same function
    and weights as ``InstanceNorm3d(affine=True)``), which keeps the channels-last layout that a CPU's
    bfloat16 convolutions need to be fast; torch's instance normalisation returns channels-first.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(cout, cout), nn.LeakyReLU(0.01),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(cout, cout),
        )
        self.skip = nn.Conv3d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)
        return F.leaky_relu(self.body(x) + self.skip(x), 0.01)


def head_decays(heads: int) -> torch.Tensor:
    """Per-head decay rates, from short reach (0.75) to long reach (about 0.97), as in RetNet/RMT."""
    return 1 - 2.0 ** (-2.0 - 4.0 * torch.arange(heads, dtype=torch.float32) / heads)


def manhattan_decay(shape: tuple[int, int, int], gammas: torch.Tensor) -> torch.Tensor:
    """(heads, N, N) with gamma_h ** (|dz| + |dy| + |dx|) between all token pairs of a grid."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij")
    coords = torch.stack([g.reshape(-1) for g in grids], dim=1)
    distance = torch.cdist(coords, coords, p=1)
    return torch.exp(distance[None] * torch.log(gammas)[:, None, None])


def axis_decay(n: int, gammas: torch.Tensor) -> torch.Tensor:
    """(heads, n, n) with gamma_h ** |d| along one axis."""
    index = torch.arange(n, dtype=torch.float32)
    distance = (index[:, None] - index[None]).abs()
    return torch.exp(distance[None] * torch.log(gammas)[:, None, None])


class ManhattanRetention(nn.Module):
    """Multi-head attention with Manhattan spatial decay and an optional key gate, on a 3D grid."""

    def __init__(self, dim: int, heads: int, decay: bool, full_attention_tokens: int) -> None:
        super().__init__()
        self.heads = heads
        self.decay = decay
        self.full_attention_tokens = full_attention_tokens
        self.qkv = nn.Linear(dim, 3 * dim)
        self.lce = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("gammas", head_decays(heads), persistent=False)

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """x: (B, D, H, W, C) tokens; gate: (B, D, H, W) multiplier of attention towards each key."""
        b, d, h, w, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        local = self.lce(v.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        if d * h * w <= self.full_attention_tokens:
            out = self._full(q, k, v, gate)
        else:
            out = v
            for axis in (3, 2, 1):  # W, then H, then D, reusing q and k as RMT's decomposed form does
                out = self._along(axis, q, k, out, gate)
        return self.proj(out + local)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        *lead, c = t.shape
        return t.reshape(*lead, self.heads, c // self.heads).transpose(-2, -3)  # (..., heads, n, dh)

    def _weights(self, q: torch.Tensor, k: torch.Tensor, decay: torch.Tensor | None, gate: torch.Tensor | None) -> torch.Tensor:
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        if decay is not None:
            attn = attn * decay
        if gate is not None:
            attn = attn * gate.unsqueeze(-2).unsqueeze(-2)  # over keys, same for every head and query
        return attn

    def _full(self, q, k, v, gate) -> torch.Tensor:
        b, d, h, w, c = q.shape
        flat = lambda t: self._split(t.reshape(b, d * h * w, c))  # noqa: E731
        decay = manhattan_decay((d, h, w), self.gammas).to(q) if self.decay else None
        attn = self._weights(flat(q), flat(k), decay, gate.reshape(b, -1) if gate is not None else None)
        out = attn @ flat(v)  # (b, heads, n, dh)
        return out.transpose(1, 2).reshape(b, d, h, w, c)

    def _along(self, axis: int, q, k, v, gate) -> torch.Tensor:
        """Attention along one grid axis (1=D, 2=H, 3=W), every other position a separate sequence."""
        move = lambda t: t.movedim(axis, -2) if t.dim() == 5 else t.movedim(axis, -1)  # noqa: E731
        qa, ka, va = (move(t) for t in (q, k, v))
        n = qa.shape[-2]
        decay = axis_decay(n, self.gammas).to(q) if self.decay else None
        attn = self._weights(self._split(qa), self._split(ka), decay, move(gate) if gate is not None else None)
        out = (attn @ self._split(va)).transpose(-2, -3)
        out = out.reshape(*out.shape[:-2], -1)
        return out.movedim(-2, axis)


class RetentionBlock(nn.Module):
    """RMT block: conditional position encoding, Manhattan retention, feed-forward; each residual."""

    def __init__(self, dim: int, heads: int, config: DoseNetConfig) -> None:
        super().__init__()
        self.cpe = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ManhattanRetention(dim, heads, config.decay, config.full_attention_tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 3 * dim), nn.GELU(), nn.Linear(3 * dim, dim))
        self.modulate = config.modulation
        if self.modulate:
            # a and b start at softplus(0.5) ~ 0.97 and stay positive through the softplus
            self.raw_a = nn.Parameter(torch.tensor(0.5))
            self.raw_b = nn.Parameter(torch.tensor(0.5))

    def gate(self, masks: torch.Tensor) -> torch.Tensor | None:
        """G = 2 sigmoid(1 + a M_PTV - b M_OAR) from (B, 2, D, H, W) target and organ masks."""
        if not self.modulate:
            return None
        a, b = F.softplus(self.raw_a), F.softplus(self.raw_b)
        return 2 * torch.sigmoid(1 + a * masks[:, 0] - b * masks[:, 1])

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        t = x.permute(0, 2, 3, 4, 1)
        t = t + self.attn(self.norm1(t), self.gate(masks))
        t = t + self.ffn(self.norm2(t))
        return t.permute(0, 4, 1, 2, 3)


class TransformerStage(nn.Module):
    def __init__(self, cin: int, dim: int, config: DoseNetConfig) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Conv3d(cin, dim, 3, padding=1), nn.InstanceNorm3d(dim, affine=True))
        self.blocks = nn.ModuleList(RetentionBlock(dim, config.heads, config) for _ in range(config.depth))

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x, masks)
        return x


class DoseUNet(nn.Module):
    """Encoder-decoder from input channels to dose / highest prescription at the input's resolution."""

    def __init__(self, config: DoseNetConfig, in_channels: int) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        rmt = config.backbone == "rmt"

        def stage(i: int, cin: int, cout: int) -> nn.Module:
            return TransformerStage(cin, cout, config) if rmt and i in config.transformer_stages else ConvBlock(cin, cout)

        self.encoder = nn.ModuleList(stage(i, in_channels if i == 0 else widths[i - 1], widths[i]) for i in range(len(widths)))
        self.decoder = nn.ModuleList(ConvBlock(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1))
        self.head = nn.Conv3d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        masks = torch.cat(
            [x[:, c.target_channel : c.target_channel + 1], x[:, c.organ_channels[0] : c.organ_channels[1]].amax(1, keepdim=True)], 1
        )
        skips = []
        for i, stage in enumerate(self.encoder):
            if i > 0:
                x = F.max_pool3d(x, 2)
                masks = F.avg_pool3d(masks, 2)
            x = stage(x, masks)
            skips.append(x)
        for i in reversed(range(len(self.decoder))):
            # Channels-last: torch's trilinear upsampling of bfloat16 is several times faster so (same values).
            x = x.contiguous(memory_format=torch.channels_last_3d)
            x = F.interpolate(x, size=skips[i].shape[2:], mode="trilinear", align_corners=False)
            x = self.decoder[i](torch.cat([x, skips[i]], 1))
        # The head in float32 even under bfloat16 autocast: bfloat16's 8-bit mantissa would round the dose
        # to steps of 0.4% of the prescription (0.3 Gy at 70 Gy).
        with torch.autocast(x.device.type, enabled=False):
            return self.head(x.float())


class DoseRefiner(nn.Module):
    """Correction of the dose interpolated from the working grid, at the CT's resolution.

    Three 3x3x3 convolutions over the input channels and the interpolated dose predict a residual
    added to that dose: edges the coarse grid blurs (target borders, steep fall-off into organs)
    sharpened from the full-resolution masks. The last convolution starts at zero, so an untrained
    head changes nothing.
    """

    reach = 3  # voxels on each side that an output voxel depends on

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(in_channels + 1, width, 3, padding=1), nn.LeakyReLU(0.01),
            nn.Conv3d(width, width, 3, padding=1), nn.LeakyReLU(0.01),
            nn.Conv3d(width, 1, 3, padding=1),
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, channels: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
        """(B, 1, *shape) refined dose from (B, C, *shape) channels and the interpolated dose, both on the CT grid."""
        # Channels-last: a CPU's convolutions take about half their time so (the same values).
        x = torch.cat([channels, dose.to(channels.dtype)], 1).contiguous(memory_format=torch.channels_last_3d)
        residual = self.body(x)
        return dose.float() + residual.float()


class DoseNet(nn.Module):
    """The dose model: one encoder-decoder, or a cascade of two (the second sees the first's dose), and
    optionally a full-resolution refiner (applied by the caller on the CT grid, see ``refiner``)."""

    def __init__(self, config: DoseNetConfig) -> None:
        super().__init__()
        self.config = config
        self.first = DoseUNet(config, config.in_channels)
        self.second = DoseUNet(config, config.in_channels + 1) if config.cascade else None
        self.refiner = DoseRefiner(config.in_channels, config.refiner_width) if config.refiner_width > 0 else None

    @property
    def multiple(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (len(self.config.widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.use_structures:
            x = x.clone()
            x[:, self.config.target_channel : self.config.organ_channels[1]] = 0
        dose = self.first(x)
        if self.second is not None:
            dose = self.second(torch.cat([x, dose], 1))
        return dose

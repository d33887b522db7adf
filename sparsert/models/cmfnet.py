"""CmFNet: a triple-branch 3D network fusing CT and MR for tumour segmentation.

Built from V-Net-style blocks (residual convolution stages with PReLU, stride-2 down-convolutions,
transposed-convolution up-sampling, concatenated skips). Three branches:

- a CT branch with 3 down-samplings, which keeps detail;
- an MR branch with 4 down-samplings, which sees wider context;
- a cross-modal branch: cross-modal feature fusion (CFF: concatenate the CT and MR features of a
  scale, 3x3x3 convolution, PReLU) at the full, 1/2 and 1/4 scales; cross-modal feature
  enhancement (CFE) at the deepest shared scale (1/8: a stride-2 down-convolution of the 1/4
  fused features, then three convolution modules); its own decoder with the CFF outputs as skips.

Every branch predicts a tumour logit map, ``{"ct": y_ct, "mr": y_mr, "fused": y_mm}``; inference
uses ``"fused"``. The fusion modules are switchable for the ablation: without CFF the scales are
fused by averaging (no learned fusion); without CFE the cross-modal decoder starts at the 1/4
scale; without skips the cross-modal decoder only up-samples.

:class:`StackedVNet` is the single-branch comparison: the MR-branch architecture on the CT and MR
stacked as input channels (or any number of channels), predicting ``{"fused": y}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sparsert.errors import InputError
from sparsert.config_dicts import from_dict

ARCHITECTURES = ("cmfnet", "stacked")
CT_DOWNSAMPLINGS = 3
MR_DOWNSAMPLINGS = 4
CFE_CONVS = 3


@dataclass
class CmFNetConfig:
    architecture: str = "cmfnet"  # "cmfnet" (triple branch) or "stacked" (single branch, stacked channels)
    channels: tuple[int, ...] = (8, 16, 32, 64, 96)  # per scale, full resolution first; one more than MR down-samplings
    # Convolutions per residual stage, per scale; none at full resolution, where CPU time goes.
    convs: tuple[int, ...] = (0, 1, 2, 2, 2)
    kernel_size: int = 3
    in_channels: int = 2  # "stacked" only: 2 = CT and MR as channels, 1 = the CT alone
    use_cff: bool = True
    use_cfe: bool = True
    use_skips: bool = True  # skip connections of the cross-modal decoder

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CmFNetConfig":
        return from_dict(cls, data, "cross-modal network config")

    def validate(self) -> "CmFNetConfig":
        if self.architecture not in ARCHITECTURES:
            raise InputError(f"model.architecture '{self.architecture}' unknown (choose {', '.join(ARCHITECTURES)})")
        levels = MR_DOWNSAMPLINGS + 1
        if len(self.channels) != levels or len(self.convs) != levels:
            raise InputError(f"model.channels and model.convs need {levels} values (one per scale), got "
                             f"{len(self.channels)} and {len(self.convs)}")
        if min(self.channels) < 1 or min(self.convs) < 0 or self.kernel_size % 2 == 0:
            raise InputError("model.channels must be positive, model.convs non-negative, model.kernel_size odd")
        return self

    @property
    def size_multiple(self) -> int:
        """Input sizes must be multiples of this (the MR branch down-samples 4 times)."""
        return 2**MR_DOWNSAMPLINGS


def _norm_act(channels: int) -> list[nn.Module]:
    # Instance norm: training batches are one or two patches.
    return [nn.InstanceNorm3d(channels, affine=True), nn.PReLU(channels)]


def conv_module(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    """Convolution, normalisation, PReLU."""
    return nn.Sequential(nn.Conv3d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False), *_norm_act(c_out))


class ResidualStage(nn.Module):
    """``n`` convolution modules with a residual connection around them, then PReLU (V-Net stage)."""

    def __init__(self, channels: int, n: int, kernel_size: int) -> None:
        super().__init__()
        self.ops = nn.Sequential(*[conv_module(channels, channels, kernel_size) for _ in range(n)])
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ops(x) + x) if len(self.ops) else x


def down(c_in: int, c_out: int) -> nn.Sequential:
    """Stride-2 down-convolution (V-Net's replacement for pooling)."""
    return nn.Sequential(nn.Conv3d(c_in, c_out, 2, stride=2, bias=False), *_norm_act(c_out))


def up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose3d(c_in, c_out, 2, stride=2, bias=False), *_norm_act(c_out))


class Encoder(nn.Module):
    """Input stage at full resolution, then ``depth`` down-samplings; returns the features of every scale."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], convs: tuple[int, ...], kernel_size: int) -> None:
        super().__init__()
        self.stem = conv_module(in_channels, channels[0], kernel_size)
        self.stages = nn.ModuleList([ResidualStage(channels[0], convs[0], kernel_size)])
        self.downs = nn.ModuleList()
        for level in range(1, len(channels)):
            self.downs.append(down(channels[level - 1], channels[level]))
            self.stages.append(ResidualStage(channels[level], convs[level], kernel_size))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stages[0](self.stem(x))]
        for down_conv, stage in zip(self.downs, self.stages[1:]):
            features.append(stage(down_conv(features[-1])))
        return features


class Decoder(nn.Module):
    """Up-sampling from the deepest features to full resolution, merging skips when given; a 1x1x1 head."""

    def __init__(self, channels: tuple[int, ...], convs: tuple[int, ...], kernel_size: int, skips: bool = True) -> None:
        super().__init__()
        self.skips = skips
        self.ups = nn.ModuleList()
        self.merges = nn.ModuleList()
        self.stages = nn.ModuleList()
        for level in reversed(range(len(channels) - 1)):
            width = channels[level]
            self.ups.append(up(channels[level + 1], width))
            self.merges.append(conv_module(2 * width, width, kernel_size) if skips else nn.Identity())
            self.stages.append(ResidualStage(width, convs[level], kernel_size))
        self.head = nn.Conv3d(channels[0], 1, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for i, (up_conv, merge, stage) in enumerate(zip(self.ups, self.merges, self.stages)):
            x = up_conv(x)
            if self.skips:
                x = merge(torch.cat([x, features[-2 - i]], dim=1))
            x = stage(x)
        return self.head(x)


class CmFNet(nn.Module):
    """The triple-branch fusion network; ``forward(ct, mr)`` takes (B, 1, D, H, W) tensors.

    CT-only mode is the caller's: pass the CT as ``mr`` too.
    """

    def __init__(self, config: CmFNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = (config or CmFNetConfig()).validate()
        ch, cv, k = config.channels, config.convs, config.kernel_size
        ct_levels = CT_DOWNSAMPLINGS + 1
        self.ct_encoder = Encoder(1, ch[:ct_levels], cv[:ct_levels], k)
        self.ct_decoder = Decoder(ch[:ct_levels], cv[:ct_levels], k)
        self.mr_encoder = Encoder(1, ch, cv, k)
        self.mr_decoder = Decoder(ch, cv, k)
        fused = CT_DOWNSAMPLINGS  # CFF at scales 0, 1, 2; CFE makes scale 3
        self.cff = nn.ModuleList([conv_module(2 * ch[s], ch[s], 3) for s in range(fused)]) if config.use_cff else None
        if config.use_cfe:
            convs = [conv_module(ch[fused], ch[fused], k) for _ in range(CFE_CONVS)]
            self.cfe = nn.Sequential(down(ch[fused - 1], ch[fused]), *convs)
            mm_levels = fused + 1
        else:
            self.cfe = None
            mm_levels = fused
        self.mm_decoder = Decoder(ch[:mm_levels], cv[:mm_levels], k, skips=config.use_skips)

    def forward(self, ct: torch.Tensor, mr: torch.Tensor) -> dict[str, torch.Tensor]:
        ct_features = self.ct_encoder(ct)
        mr_features = self.mr_encoder(mr)
        fused = []
        for s in range(CT_DOWNSAMPLINGS):
            if self.cff is not None:
                fused.append(self.cff[s](torch.cat([ct_features[s], mr_features[s]], dim=1)))
            else:
                fused.append(0.5 * (ct_features[s] + mr_features[s]))
        if self.cfe is not None:
            fused.append(self.cfe(fused[-1]))
        return {
            "ct": self.ct_decoder(ct_features),
            "mr": self.mr_decoder(mr_features),
            "fused": self.mm_decoder(fused),
        }


class StackedVNet(nn.Module):
    """Single-branch comparison: the MR-branch architecture on stacked input channels."""

    def __init__(self, config: CmFNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = (config or CmFNetConfig(architecture="stacked")).validate()
        self.encoder = Encoder(config.in_channels, config.channels, config.convs, config.kernel_size)
        self.decoder = Decoder(config.channels, config.convs, config.kernel_size)

    def forward(self, ct: torch.Tensor, mr: torch.Tensor) -> dict[str, torch.Tensor]:
        image = torch.cat([ct, mr], dim=1)[:, : self.config.in_channels]
        return {"fused": self.decoder(self.encoder(image))}


def build_network(config: CmFNetConfig) -> CmFNet | StackedVNet:
    config.validate()
    return CmFNet(config) if config.architecture == "cmfnet" else StackedVNet(config)

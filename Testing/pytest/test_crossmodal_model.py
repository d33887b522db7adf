"""The CmFNet network: branch depths, outputs of every ablation switch, which inputs feed which output."""

from __future__ import annotations

import pytest
import torch
from crossmodal_testdata import TINY_NETWORK, one_thread  # noqa: F401 (one_thread: fixture)

from sparsert.errors import InputError
from sparsert.models.cmfnet import CmFNet, CmFNetConfig, StackedVNet, build_network

TINY = TINY_NETWORK
SHAPE = (1, 1, 16, 32, 48)
pytestmark = pytest.mark.usefixtures("one_thread")


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def test_branch_depths():
    net = CmFNet(CmFNetConfig(**TINY))
    ct, mr = _inputs()
    ct_scales = [tuple(f.shape[2:]) for f in net.ct_encoder(ct)]
    mr_scales = [tuple(f.shape[2:]) for f in net.mr_encoder(mr)]
    # CT: 3 down-samplings (keeps detail); MR: 4 (wider context).
    assert ct_scales == [(16, 32, 48), (8, 16, 24), (4, 8, 12), (2, 4, 6)]
    assert mr_scales == ct_scales + [(1, 2, 3)]


@pytest.mark.parametrize(
    "switches",
    [
        {}, {"use_cff": False}, {"use_cfe": False}, {"use_skips": False},
        {"use_cff": False, "use_cfe": False, "use_skips": False},
    ],
)
def test_outputs_of_every_ablation(switches):
    net = CmFNet(CmFNetConfig(**TINY, **switches)).eval()
    ct, mr = _inputs()
    with torch.no_grad():
        out = net(ct, mr)
    assert set(out) == {"ct", "mr", "fused"}
    assert all(tuple(y.shape) == SHAPE for y in out.values())
    assert (net.cff is None) == (switches.get("use_cff") is False)
    assert (net.cfe is None) == (switches.get("use_cfe") is False)


def test_ct_only_mode_feeds_the_ct_to_both_branches():
    net = CmFNet(CmFNetConfig(**TINY)).eval()
    ct, _ = _inputs()
    with torch.no_grad():
        out = net(ct, ct)
    assert all(torch.isfinite(y).all() for y in out.values())


def test_each_output_sees_the_right_inputs():
    net = CmFNet(CmFNetConfig(**TINY)).eval()
    ct, mr = _inputs(1)
    _, other_mr = _inputs(2)
    with torch.no_grad():
        a, b = net(ct, mr), net(ct, other_mr)
    # The CT branch never sees the MR; the MR branch and the fused output do.
    assert torch.equal(a["ct"], b["ct"])
    assert not torch.allclose(a["mr"], b["mr"])
    assert not torch.allclose(a["fused"], b["fused"])


def test_ablation_removes_parameters():
    full = sum(p.numel() for p in CmFNet(CmFNetConfig(**TINY)).parameters())
    for switch in ("use_cff", "use_cfe", "use_skips"):
        ablated = sum(p.numel() for p in CmFNet(CmFNetConfig(**TINY, **{switch: False})).parameters())
        assert ablated < full, switch


def test_stacked_single_branch():
    net = build_network(CmFNetConfig(architecture="stacked", **TINY))
    assert isinstance(net, StackedVNet)
    ct, mr = _inputs()
    with torch.no_grad():
        out = net(ct, mr)
    assert list(out) == ["fused"] and tuple(out["fused"].shape) == SHAPE
    assert net.encoder.stem[0].in_channels == 2  # CT and MR as channels


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"architecture": "unet"}, "architecture 'unet' unknown"),
        ({"channels": (4, 8, 16)}, "need 5 values"),
        ({"kernel_size": 4}, "kernel_size odd"),
    ],
)
def test_bad_config(bad, message):
    with pytest.raises(InputError, match=message):
        CmFNetConfig(**{**TINY, **bad}).validate()

"""Losses of the cross-modal network: partial CE, multi-view gated CRF, inter-modal consistency."""

from __future__ import annotations

import math

import pytest
import torch
from crossmodal_testdata import one_thread  # noqa: F401 (fixture)

from sparsert.losses.crossmodal import (
    VIEWS,
    consistency_loss,
    gated_crf_loss,
    pair_kernel,
    scribble_loss,
    view_offsets,
)

SPACING = (3.0, 2.0, 2.0)  # k, j, i mm
pytestmark = pytest.mark.usefixtures("one_thread")


def _step_image(edge: int = 8, shape=(6, 12, 16)) -> torch.Tensor:
    """Dark (0.2) left of column ``edge`` along i, bright (0.8) from it on."""
    image = torch.full((1, 1) + shape, 0.2)
    image[..., edge:] = 0.8
    return image


def _segmentation(edge: int, shape=(6, 12, 16)) -> torch.Tensor:
    prob = torch.zeros((1, 1) + shape)
    prob[..., :edge] = 1.0
    return prob


def test_crf_prefers_a_boundary_on_the_intensity_edge():
    image = _step_image(8)
    aligned = gated_crf_loss(_segmentation(8), image, SPACING, radius=3, sigma_intensity=0.1)
    misaligned = gated_crf_loss(_segmentation(5), image, SPACING, radius=3, sigma_intensity=0.1)
    assert aligned < 0.1 * misaligned
    # A segmentation that never changes label pays nothing.
    assert gated_crf_loss(torch.ones((1, 1, 6, 12, 16)), image, SPACING) == 0


def test_crf_gate_removes_invalid_voxels():
    image = _step_image(8)
    valid = torch.ones((1, 1, 6, 12, 16))
    valid[..., :7] = 0  # the label change at column 5 lies in the invalid part
    gated = gated_crf_loss(_segmentation(5), image, SPACING, radius=1, valid=valid)
    assert gated == 0


def test_kernel_is_symmetric():
    features = torch.rand((2, 2, 5, 7, 9), generator=torch.Generator().manual_seed(0))
    for offset in [(0, 1, 2), (1, 0, -1), (2, -1, 0)]:
        forward = pair_kernel(features, offset, SPACING, 6.0, 0.1)
        backward = pair_kernel(features, tuple(-d for d in offset), SPACING, 6.0, 0.1)
        # K(a, a + d) over all a equals K(b, b - d) over all b = a + d: the same pairs, same order.
        assert torch.allclose(forward, backward)
        assert forward.shape == (2, 1) + tuple(n - abs(d) for n, d in zip((5, 7, 9), offset))


def test_kernel_value_by_hand():
    features = torch.tensor([0.0, 0.1]).reshape(1, 1, 1, 1, 2)
    kernel = pair_kernel(features, (0, 0, 1), SPACING, 6.0, 0.1)
    # exp(-(0.1)^2 / (2 0.1^2) - (2 mm)^2 / (2 (6 mm)^2))
    assert kernel.item() == pytest.approx(math.exp(-0.5 - 4.0 / 72.0))


def test_crf_loss_by_hand():
    features = torch.tensor([0.0, 0.1]).reshape(1, 1, 1, 1, 2)
    prob = torch.tensor([0.9, 0.2]).reshape(1, 1, 1, 1, 2)
    loss = gated_crf_loss(prob, features, SPACING, radius=1, sigma_xy_mm=6.0, sigma_intensity=0.1)
    k = math.exp(-0.5 - 4.0 / 72.0)
    potts = 0.9 * 0.8 + 0.2 * 0.1  # P(labels differ)
    # Axial and coronal slices hold the pair (both directions, over 2 voxels); sagittal slices none.
    per_view = 2 * k * potts / 2
    assert loss.item() == pytest.approx((per_view + per_view + 0.0) / 3)


def test_view_offsets_stay_in_their_plane():
    for view, axes in VIEWS.items():
        offsets = view_offsets(axes, 2)
        assert len(offsets) == (5 * 5 - 1) // 2
        off_plane = ({0, 1, 2} - set(axes)).pop()
        assert all(d[off_plane] == 0 for d in offsets), view
        assert not {tuple(-x for x in d) for d in offsets} & set(offsets)


def test_consistency_by_hand():
    fused = torch.tensor([0.5, 1.0])
    ct = torch.tensor([0.0, 1.0])
    mr = torch.tensor([0.5, 0.5])
    # mean((mm - ct)^2) = (0.25 + 0) / 2, mean((mm - mr)^2) = (0 + 0.25) / 2
    assert consistency_loss(fused, ct, mr, 0.8, 0.8).item() == pytest.approx(0.8 * 0.125 + 0.8 * 0.125)
    assert consistency_loss(fused, ct, mr, 0.8, 0.4).item() == pytest.approx(0.8 * 0.125 + 0.4 * 0.125)


def test_partial_ce_ignores_unlabelled_voxels():
    shape = (1, 1, 2, 3, 4)
    foreground = torch.zeros(shape)
    background = torch.zeros(shape)
    foreground[0, 0, 0, 0, 0] = 1
    background[0, 0, 1, 2, 3] = 1
    logits = {name: torch.zeros(shape) for name in ("ct", "mr", "fused")}
    # Logit 0 is probability 1/2: -log(1/2) per labelled voxel, for each of the three outputs.
    assert scribble_loss(logits, foreground, background).item() == pytest.approx(3 * math.log(2))
    changed = {name: y.clone() for name, y in logits.items()}
    for y in changed.values():
        y[0, 0, 1, 1, 1] = 25.0  # an unlabelled voxel
    assert scribble_loss(changed, foreground, background).item() == pytest.approx(3 * math.log(2))
    confident = {name: y.clone() for name, y in logits.items()}
    for y in confident.values():
        y[0, 0, 0, 0, 0], y[0, 0, 1, 2, 3] = 20.0, -20.0  # right on both scribbles
    assert scribble_loss(confident, foreground, background).item() < 1e-6


def test_partial_ce_balances_the_classes():
    shape = (1, 1, 1, 1, 4)
    foreground = torch.tensor([1.0, 0, 0, 0]).reshape(shape)
    background = torch.tensor([0, 1.0, 1.0, 1.0]).reshape(shape)
    logits = {"fused": torch.tensor([0.0, -40.0, -40.0, -40.0]).reshape(shape)}
    # One tumour voxel at probability 1/2, three background voxels right: log 2 over 4 voxels, or
    # half of the tumour mean (log 2) plus half of the background mean (0).
    assert scribble_loss(logits, foreground, background, balanced=False).item() == pytest.approx(math.log(2) / 4)
    assert scribble_loss(logits, foreground, background).item() == pytest.approx(math.log(2) / 2)

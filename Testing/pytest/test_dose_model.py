"""The dose network's parts: inputs from structures, Manhattan decay, modulation, losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparsert.dose.grid import body_box, flip_lr, pad_to_multiple, to_working, working_shape
from sparsert.dose.inputs import BODY_CHANNEL, ORGAN_CHANNELS, ORGANS, TARGET_CHANNEL, dose_inputs
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.losses.dose import dose_losses, masked_l1, ranking
from sparsert.models.dose_rmt import ConvBlock, DoseNet, DoseNetConfig, RetentionBlock, axis_decay, manhattan_decay
from sparsert.roles import StructureRole

SHAPE = (8, 16, 16)
GEOMETRY = Geometry(SHAPE, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _box(k, j, i) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[k, j, i] = True
    return mask


def _ct() -> Volume:
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[:, 2:14, 2:14] = 40.0
    return Volume(hu, GEOMETRY)


def _structures(**extra) -> Segmentation:
    segments = [
        Segment("PTV70", _box(slice(2, 6), slice(6, 10), slice(6, 10))),
        Segment("PTV56", _box(slice(2, 6), slice(4, 12), slice(4, 12))),
        Segment("Parotid_R", _box(slice(2, 6), slice(3, 5), slice(3, 5))),
        Segment("Background", _box(0, 0, 0)),
    ] + [Segment(name, mask) for name, mask in extra.items()]
    return Segmentation(GEOMETRY, segments)


def test_inputs_weight_targets_by_prescription_and_map_organ_spellings():
    inputs = dose_inputs(_ct(), _structures())
    ch = inputs.channels
    assert ch.shape == (BODY_CHANNEL + 1,) + SHAPE and inputs.highest_gy == 70.0
    assert ch[TARGET_CHANNEL][3, 8, 8] == 1.0  # PTV70 wins where the targets overlap
    assert ch[TARGET_CHANNEL][3, 4, 11] == pytest.approx(56 / 70)
    right = ORGAN_CHANNELS.start + ORGANS.index("RightParotid")
    assert ch[right][3, 3, 3] == 1.0 and ch[right].sum() == 4 * 2 * 2
    assert ch[ORGAN_CHANNELS].sum() == ch[right].sum()  # no other organ, the Background is not an input
    assert inputs.body[:, 2:14, 2:14].all() and not inputs.body[:, 0, :].any()  # found from the CT


def test_inputs_refuse_what_would_drop_or_invent_a_structure(tmp_path):
    with pytest.raises(InputError, match="Lung.*match no role.*roles file"):
        dose_inputs(_ct(), _structures(Lung=_box(1, 1, 1)))
    mapped = dose_inputs(_ct(), _structures(Lung=_box(1, 1, 1)), roles={"Lung": StructureRole("organ", organ="Larynx")})
    assert mapped.channels[ORGAN_CHANNELS.start + ORGANS.index("Larynx")][1, 1, 1] == 1.0
    no_target = Segmentation(GEOMETRY, [Segment("Brainstem", _box(1, 1, 1))])
    with pytest.raises(InputError, match="no target among the structures"):
        dose_inputs(_ct(), no_target)
    assert dose_inputs(_ct(), Segmentation(GEOMETRY, [Segment("CTV", _box(1, 1, 1))]), prescriptions={"CTV": 60}).highest_gy == 60
    with pytest.raises(InputError, match="Larynx are empty"):
        dose_inputs(_ct(), _structures(Larynx=np.zeros(SHAPE, bool)))
    other = Geometry((4, 16, 16), (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(InputError, match="body mask is on a different grid"):
        dose_inputs(_ct(), _structures(), body=Volume(np.ones((4, 16, 16), np.uint8), other))
    with pytest.raises(InputError, match="structures"):
        dose_inputs(_ct(), Segmentation(other, [Segment("PTV70", np.ones((4, 16, 16), bool))]))


def test_manhattan_decay_is_gamma_to_the_city_block_distance():
    gammas = torch.tensor([0.5, 0.9])
    decay = manhattan_decay((2, 3, 4), gammas)
    a, b = 0, (1 * 3 + 2) * 4 + 3  # (0,0,0) and (1,2,3): distance 6
    assert decay[0, a, b] == pytest.approx(0.5**6) and decay[1, b, a] == pytest.approx(0.9**6)
    assert torch.allclose(axis_decay(3, gammas)[1], torch.tensor([[1, 0.9, 0.81], [0.9, 1, 0.9], [0.81, 0.9, 1]]))


def test_modulation_raises_attention_in_targets_and_lowers_it_in_organs():
    block = RetentionBlock(8, 2, DoseNetConfig())
    masks = torch.zeros(1, 2, 2, 2, 2)
    masks[0, 0, 0] = 1  # a target slab
    masks[0, 1, 1] = 1  # an organ slab
    gate = block.gate(masks)
    assert gate[0, 0].min() > 2 * torch.sigmoid(torch.tensor(1.0)) > gate[0, 1].max()
    assert RetentionBlock(8, 2, DoseNetConfig(modulation=False)).gate(masks) is None


@pytest.mark.parametrize("config", [
    DoseNetConfig(widths=(4, 8, 8, 16), heads=2, depth=1, full_attention_tokens=8),  # axial at stage 2, full at 3
    DoseNetConfig(widths=(4, 8, 8, 16), backbone="unet", cascade=True),
    DoseNetConfig(widths=(4, 8, 8, 16), heads=2, depth=1, decay=False, modulation=False),
    DoseNetConfig(widths=(4, 8, 8, 16), backbone="unet", use_structures=False),
])
def test_networks_give_dose_at_the_input_resolution_and_learn(config):
    torch.manual_seed(0)
    net = DoseNet(config)
    x = torch.rand(2, config.in_channels, 16, 16, 16)
    y = torch.rand(2, 1, 16, 16, 16)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for _ in range(8):
        loss = (net(x) - y).abs().mean()
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert net(x).shape == y.shape and float(loss) < first


def test_conv_blocks_normalise_each_channel_as_instance_normalisation_did():
    # The shipped weights were trained with InstanceNorm3d(affine=True); the channels-last group
    # normalisation with one group per channel must compute the same function with the same weights.
    torch.manual_seed(0)
    block = ConvBlock(5, 6).eval()
    for norm in (block.body[1], block.body[4]):
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 5, 8, 10, 12) * 3 + 1

    def channels_first(t: torch.Tensor) -> torch.Tensor:
        conv1, norm1, act, conv2, norm2 = block.body
        y = act(F.instance_norm(conv1(t), weight=norm1.weight, bias=norm1.bias))
        y = F.instance_norm(conv2(y), weight=norm2.weight, bias=norm2.bias)
        return F.leaky_relu(y + block.skip(t), 0.01)

    with torch.no_grad():
        torch.testing.assert_close(block(x), channels_first(x), atol=1e-5, rtol=1e-5)


def test_losses_by_hand():
    pred = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    ref = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert float(masked_l1(pred, ref, mask)) == pytest.approx(0.5)
    target, organs = torch.tensor([[1.0, 0, 0, 0]]), torch.tensor([[0, 0, 0, 1.0]])
    assert float(ranking(pred, target, organs)) == pytest.approx(3.0)  # organ mean 4 above target mean 1
    assert float(ranking(pred, organs, target)) == 0.0
    assert float(ranking(pred, target, torch.zeros_like(target))) == 0.0  # no organ in view
    losses = dose_losses(pred, ref, mask, target, organs, rank_weight=0.5)
    assert float(losses["total"]) == pytest.approx(0.5 + 0.5 * 3.0)


def test_working_grid_and_mirroring():
    assert working_shape((128, 128, 128), (2.5, 3.906, 3.906), (5.0, 7.8125, 7.8125)) == (64, 64, 64)
    x = torch.zeros(1, BODY_CHANNEL + 1, 4, 6, 6)
    x[0, ORGAN_CHANNELS.start + ORGANS.index("RightParotid"), :, :, 0] = 1
    mirrored = flip_lr(x, ORGAN_CHANNELS.start, (ORGANS.index("RightParotid"), ORGANS.index("LeftParotid")))
    assert mirrored[0, ORGAN_CHANNELS.start + ORGANS.index("LeftParotid"), :, :, -1].all()
    assert not mirrored[0, ORGAN_CHANNELS.start + ORGANS.index("RightParotid")].any()
    padded, region = pad_to_multiple(to_working(x, (3, 5, 5)), 8)
    assert padded.shape[2:] == (8, 8, 8) and padded[0, 0, 7, 7, 7] == -1.0 and padded[0, 1, 7, 7, 7] == 0.0
    assert tuple(s.stop for s in region) == (3, 5, 5)


@pytest.mark.parametrize("shape", [(7, 9, 5), (30, 40, 13)])
def test_working_grid_averages_as_torchs_area_interpolation_values_and_gradients(shape):
    # A mask channel non-zero in a small box, a dense channel and an empty one; down- and upsampled axes.
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(2, 3, 20, 17, 13, dtype=torch.float64)
    x[:, 0, 3:9, 2:8, 4:10] = torch.rand(2, 6, 6, 6, generator=generator, dtype=torch.float64)
    x[:, 1] = torch.rand(2, 20, 17, 13, generator=generator, dtype=torch.float64) - 0.5
    expected = torch.nn.functional.interpolate(x, size=shape, mode="area")
    torch.testing.assert_close(to_working(x, shape), expected, rtol=0, atol=1e-12)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad((to_working(x, shape) ** 2).sum(), x)
    (expected_grad,) = torch.autograd.grad((torch.nn.functional.interpolate(x, size=shape, mode="area") ** 2).sum(), x)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


def test_windows_cover_only_the_body_box():
    from sparsert.dose.predict import network_dose

    x = torch.zeros(1, BODY_CHANNEL + 1, 20, 40, 40)
    x[:, 0] = -1.0
    x[0, BODY_CHANNEL, 5:9, 30:38, 2:6] = 0.3  # partial-volume body fractions count as body
    assert body_box(x, (8, 16, 16)) == (slice(3, 11), slice(24, 40), slice(0, 16))  # grown, kept inside
    assert body_box(x, (30, 4, 4)) == (slice(0, 20), slice(30, 38), slice(2, 6))
    torch.manual_seed(0)
    net = DoseNet(DoseNetConfig(widths=(4, 8, 8, 16), backbone="unet")).eval()
    with torch.no_grad():
        dose = network_dose(net, x, window=(8, 16, 16))
        alone = network_dose(net, x[:, :, 3:11, 24:40, 0:16], window=(8, 16, 16))
    assert dose.shape == (1, 1, 20, 40, 40)
    assert torch.equal(dose[:, :, 3:11, 24:40, 0:16], alone) and alone.abs().sum() > 0
    assert dose.abs().sum() == alone.abs().sum()  # nothing predicted outside the box
    x[0, BODY_CHANNEL] = 0
    assert body_box(x, (8, 16, 16)) == (slice(0, 20), slice(0, 40), slice(0, 40))


def test_a_window_grows_to_span_a_box_slightly_larger_than_it():
    from sparsert.dose.grid import pad_to_multiple
    from sparsert.dose.predict import fitted_window, network_dose

    assert fitted_window((48, 64, 64), (50, 76, 64)) == (50, 76, 64)  # up to 20 % larger: one window
    assert fitted_window((48, 64, 64), (58, 90, 40)) == (48, 64, 40)  # larger: slide; smaller: the box
    x = torch.zeros(1, BODY_CHANNEL + 1, 12, 20, 20)
    x[:, 0] = -1.0
    x[0, BODY_CHANNEL, 1:10, 2:18, 2:18] = 1.0  # a 9 x 16 x 16 body box against an 8 x 16 x 16 window
    torch.manual_seed(0)
    net = DoseNet(DoseNetConfig(widths=(4, 8, 8, 16), backbone="unet")).eval()
    with torch.no_grad():
        dose = network_dose(net, x, window=(8, 16, 16))
        box = x[:, :, 1:10, 2:18, 2:18]
        padded, region = pad_to_multiple(box, net.multiple)
        single = net(padded)[(slice(None), slice(None)) + region]
    assert torch.allclose(dose[:, :, 1:10, 2:18, 2:18], single, atol=1e-6)


def test_the_ct_only_baseline_ignores_structures():
    torch.manual_seed(0)
    net = DoseNet(DoseNetConfig(widths=(4, 8, 8, 16), backbone="unet", use_structures=False)).eval()
    x = torch.rand(1, 11, 16, 16, 16)
    other = x.clone()
    other[:, TARGET_CHANNEL:BODY_CHANNEL] = torch.rand(1, BODY_CHANNEL - TARGET_CHANNEL, 16, 16, 16)
    assert torch.equal(net(x), net(other))


def test_training_batches_pad_small_cases_outside_the_body_instead_of_dropping_cases():
    from itertools import cycle

    from sparsert.training.dose import DoseTrainConfig, WorkingCase, random_batch

    def case(name: str, shape: tuple[int, int, int]) -> WorkingCase:
        channels = torch.rand(BODY_CHANNEL + 1, *shape)
        channels[BODY_CHANNEL] = 1.0
        return WorkingCase(name, channels, torch.rand(1, *shape), 70.0)

    config = DoseTrainConfig(batch=2, crop=(16, 16, 16), flip_p=0.5)
    cases = [case("large", (20, 24, 24)), case("small", (16, 10, 9))]
    x, y = random_batch(cases, cycle([0, 1]), config, np.random.default_rng(0))
    assert x.shape == (2, BODY_CHANNEL + 1, 16, 16, 16) and y.shape == (2, 1, 16, 16, 16)
    assert x[0, BODY_CHANNEL].min() == 1.0
    body = x[1, BODY_CHANNEL]
    assert body.sum() == 16 * 10 * 9  # the whole small case, nothing more
    assert torch.all(y[1][0][body == 0] == 0) and torch.all(x[1][1:, body == 0] == 0)
    assert torch.all(x[1][0][body == 0] == -1.0)  # air in the wide CT window, as inference pads

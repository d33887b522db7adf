"""The refinement session: state machine (initial, clicks, undo, redo), bad input, grids, region
against whole-volume passes, and ensembles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from interactive_testdata import save_model, tiny_model
from sparsert.errors import InputError
from sparsert.evaluation.refine import session_trajectory
from sparsert.interactive.clicks import Click
from sparsert.interactive.inference import RegionSettings
from sparsert.interactive.session import RefinementSession
from sparsert.io.volume import Geometry, Volume
from sparsert.models.icr import Ensemble, ICRModel, load_click_model

SHAPE = (12, 32, 32)  # k, j, i


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(0)
    zz, yy, xx = np.meshgrid(*[np.arange(n) - n / 2 for n in SHAPE], indexing="ij")
    ball = (2 * zz) ** 2 + yy**2 + xx**2 < 64
    ct = np.where(ball, 50.0, -80.0) + rng.normal(0, 10, SHAPE)
    pet = np.where(ball, 6.0, 0.8) + rng.random(SHAPE)
    return [ct.astype(np.float32), pet.astype(np.float32)]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def session_for(model, arrays, **options) -> RefinementSession:
    session = RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 2.0), **options)
    session.initial()
    return session


def test_undo_redo_state_machine(model, arrays):
    session = session_for(model, arrays)
    p0 = session.probability.copy()
    with pytest.raises(InputError, match="nothing to undo"):
        session.undo()
    with pytest.raises(InputError, match="nothing to redo"):
        session.redo()
    session.add_click((16, 16, 6), True)
    p1 = session.probability.copy()
    session.add_click((4, 4, 2), False)
    p2 = session.probability.copy()
    assert session.clicks == (Click((6, 16, 16), True), Click((2, 4, 4), False))

    session.undo()
    assert np.array_equal(session.probability, p1) and len(session.clicks) == 1
    session.undo()
    assert np.array_equal(session.probability, p0) and session.clicks == ()
    with pytest.raises(InputError, match="nothing to undo"):
        session.undo()
    assert np.array_equal(session.probability, p0)  # a refused undo changes nothing
    session.redo()
    assert np.array_equal(session.probability, p1)
    session.redo()
    assert np.array_equal(session.probability, p2) and not session.can_redo
    session.undo()
    session.add_click((20, 10, 3), False)  # a new click drops the undone one
    assert not session.can_redo and len(session.clicks) == 2
    assert np.array_equal(session.mask, session.probability > 0.5)


def test_redo_gives_what_the_click_gave_and_undo_restores_click_maps(model, arrays):
    session = session_for(model, arrays)
    session.add_click((16, 16, 6), True)
    session.add_click((4, 4, 2), False)
    p2 = session.probability.copy()
    session.undo()
    # Re-clicking the undone click from the same state reproduces it: maps were restored exactly.
    session.add_click((4, 4, 2), False)
    assert np.allclose(session.probability, p2, atol=1e-6)


def test_clicks_always_change_the_mask_where_they_are_placed(model, arrays):
    """Honoured clicks (the default): the 5 mm ball of each click keeps its label, whatever the network
    gives there; a later click wins where balls overlap; undo takes it back; off, the network's mask is kept."""
    raw = session_for(model, arrays, honour_clicks=False)
    session = session_for(model, arrays)
    initial = session.probability.copy()
    for s in (raw, session):
        s.add_click((4, 4, 2), True)  # in the background, far from the bright ball
        s.add_click((12, 4, 2), False)  # 8 mm from the positive click: the balls share i = 7..9
    # clicks (i, j, k) -> [k, j, i]; spacing (i, j, k) = (1, 1, 2) mm, so the balls span i +- 5 in-plane
    assert session.mask[2, 4, 0:7].all() and session.probability[2, 4, 4] == 1.0
    assert not session.mask[2, 4, 7:18].any() and session.probability[2, 4, 12] == 0.0
    assert raw.probability[2, 4, 4] not in (0.0, 1.0)  # the network's own value, left alone
    session.undo()
    assert session.mask[2, 4, 0:10].all()  # the positive ball whole again
    session.undo()
    assert np.array_equal(session.probability, initial)


def test_honoured_clicks_change_the_probability_only_their_way(model, arrays):
    """A positive click never lowers the probability anywhere, a negative one never raises it; the
    network alone does both (so the check can fail)."""
    raw = session_for(model, arrays, honour_clicks=False)
    session = session_for(model, arrays)
    for ijk, positive in [((16, 16, 6), True), ((4, 4, 2), False), ((20, 12, 5), True), ((10, 22, 7), False)]:
        before, raw_before = session.probability.copy(), raw.probability.copy()
        session.add_click(ijk, positive)
        raw.add_click(ijk, positive)
        change, raw_change = session.probability - before, raw.probability - raw_before
        assert (change >= 0).all() if positive else (change <= 0).all()
        assert (raw_change < 0).any() and (raw_change > 0).any()


def test_automatic_result_keeps_its_largest_part_only(model, arrays):
    """One mass by default; the dropped parts get probability 0; ``keep_largest=False`` keeps every part."""
    every = session_for(model, arrays, keep_largest=False)
    one = session_for(model, arrays)
    labels, parts = ndimage.label(every.mask)
    assert parts > 1  # the random network gives several, so the check can fail
    assert ndimage.label(one.mask)[1] == 1 and one.mask.sum() == np.bincount(labels.ravel())[1:].max()
    assert np.array_equal(one.probability[one.mask], every.probability[one.mask])
    dropped = every.mask & ~one.mask
    assert (one.probability[dropped] == 0).all()


def test_state_is_read_only_and_needs_initial(model, arrays):
    session = RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 2.0))
    with pytest.raises(InputError, match="run initial"):
        session.add_click((1, 1, 1), True)
    with pytest.raises(InputError, match="run initial"):
        _ = session.mask
    session.initial()
    with pytest.raises(ValueError):
        session.probability[0, 0, 0] = 1.0


def test_clicks_outside_the_image_are_refused_without_losing_state(model, arrays):
    session = session_for(model, arrays)
    session.add_click((16, 16, 6), True)
    before = session.probability.copy()
    for ijk in [(32, 0, 0), (0, -1, 0), (0, 0, 12), (1, 2), ("a", 1, 2)]:
        with pytest.raises(InputError):
            session.add_click(ijk, True)
    assert np.array_equal(session.probability, before) and len(session.clicks) == 1
    with pytest.raises(InputError, match="outside the image"):
        session.add_click_ras((1000.0, 0.0, 0.0), True)


def test_click_on_what_is_already_there_is_applied_with_a_warning(model, arrays):
    session = session_for(model, arrays)
    inside = np.argwhere(session.mask)
    outside = np.argwhere(~session.mask)
    assert len(inside) and len(outside)  # a random network marks some voxels, not all
    k, j, i = inside[0]
    result = session.add_click((i, j, k), True)
    assert len(result.warnings) == 1 and "already inside the mask" in result.warnings[0]
    assert len(session.clicks) == 1 and session.can_undo
    k, j, i = np.argwhere(~session.mask)[0]
    result = session.add_click((i, j, k), False)
    assert "already outside the mask" in result.warnings[0]


def test_ijk_and_ras_clicks_land_on_the_same_voxel(model, arrays):
    session = RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 2.0), origin=(10.0, -5.0, 30.0))
    session.initial()
    session.add_click((3, 5, 2), True)
    ras = session.reference.ijk_to_ras() @ np.array([7.0, 9.0, 4.0, 1.0])
    session.add_click_ras(ras[:3], False)
    assert [c.kji for c in session.clicks] == [(2, 5, 3), (4, 9, 7)]


def test_working_grid_at_the_model_spacing(arrays):
    """Images at (1, 1, 2) mm, model trained at 2 mm: the networks run on a 2 mm grid over the same box
    and results come back on the first image's grid."""
    model = tiny_model(spacing=(2.0, 2.0, 2.0))
    session = RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 2.0))
    assert session.geometry.shape == (12, 16, 16)
    assert session.geometry.origin == pytest.approx((0.5, 0.5, 0.0))  # voxel edges kept: -0.5 + 1.0
    session.initial()
    session.add_click((31, 31, 11), True)
    assert session.clicks[0].kji == (11, 15, 15)
    seg = session.segmentation("GTV")
    assert seg.geometry.shape == SHAPE and seg.names == ["GTV"]


def test_simulated_clicks_reach_the_working_voxels_they_were_placed_on(arrays):
    """Evaluation places clicks on the working grid; on a session whose working grid is coarser than its
    first image, they still land on those voxels."""
    model = tiny_model(spacing=(2.0, 2.0, 2.0))
    session = RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 2.0), origin=(10.0, -5.0, 30.0))
    truth = np.zeros(session.geometry.shape, dtype=bool)
    truth[4:8, 5:11, 5:11] = True
    trajectory = session_trajectory(session, truth, max_clicks=3)
    assert trajectory.clicks and trajectory.initial_seconds > 0
    assert [list(c.kji) for c in session.clicks] == [c["kji"] for c in trajectory.clicks]


def test_bad_images(model, arrays):
    with pytest.raises(InputError, match="needs 2 image"):
        RefinementSession.from_arrays(model, arrays[:1], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="share one shape"):
        RefinementSession.from_arrays(model, [arrays[0], arrays[1][:, :, :-1]], spacing=(1.0, 1.0, 1.0))
    geometry = Geometry(SHAPE, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    far = Geometry(SHAPE, (1.0, 1.0, 2.0), (500.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    half = Geometry(SHAPE, (1.0, 1.0, 2.0), (24.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))  # 8 of 32 mm in i
    for other, share in [(far, "0%"), (half, "25%")]:
        with pytest.raises(InputError, match=f"pet.nrrd .*covers {share} of the physical extent of ct.nrrd"):
            RefinementSession.from_volumes(
                model, [Volume(arrays[0], geometry), Volume(arrays[1], other)], names=["ct.nrrd", "pet.nrrd"]
            )
    with pytest.raises(InputError, match="unknown refinement mode"):
        RefinementSession.from_arrays(model, arrays, spacing=(1.0, 1.0, 1.0), mode="fast")


def test_region_pass_keeps_the_outside_and_its_difference_is_measured(model, arrays):
    """Region 16 mm (16 voxels in i/j, 8 slices of 2 mm) with a 2 mm context band, against whole-volume passes."""
    region = RegionSettings(size_mm=16.0, context_mm=2.0)
    # The comparison is of the networks' passes, so the sessions leave the click's ball as the network gave it.
    local = session_for(model, arrays, region=region, honour_clicks=False)
    whole = session_for(model, arrays, mode="whole", honour_clicks=False)
    before = local.probability.copy()
    local.add_click((16, 16, 6), True)
    whole.add_click((16, 16, 6), True)
    changed = local.probability != before
    k, j, i = np.nonzero(changed)
    # Outer box 8 x 16 x 16 around (6, 16, 16): slices 2..9, rows and columns 8..23; minus the 2 mm band
    # (one 2 mm slice, two 1 mm rows) on each side: slices 3..8, rows and columns 10..21.
    assert k.min() >= 3 and k.max() <= 8 and j.min() >= 10 and j.max() <= 21 and i.min() >= 10 and i.max() <= 21
    comparison = local.region_difference()
    diff = np.abs(local.probability - whole.probability)
    assert comparison.max_abs_difference == pytest.approx(float(diff.max()), abs=1e-5)
    assert comparison.mean_abs_difference == pytest.approx(float(diff.mean()), abs=1e-6)
    assert comparison.mask_disagreement_voxels == np.count_nonzero(local.mask != whole.mask)
    box = (slice(3, 9), slice(10, 22), slice(10, 22))
    assert comparison.inside_max_abs_difference == pytest.approx(float(diff[box].max()), abs=1e-5)
    outside = np.ones(SHAPE, bool)
    outside[box] = False
    assert comparison.outside_disagreement_voxels == np.count_nonzero((local.mask != whole.mask) & outside)
    assert comparison.region_voxels == 6 * 12 * 12
    assert comparison.max_abs_difference > 0  # a random network depends on everything it sees


def test_region_covering_the_volume_equals_the_whole_pass(model, arrays):
    local = session_for(model, arrays, region=RegionSettings(size_mm=1000.0))
    local.add_click((16, 16, 6), True)
    comparison = local.region_difference()
    assert comparison.max_abs_difference == 0.0 and comparison.mask_dice == 1.0


def test_ensemble_averages_members_in_probability(arrays):
    a, b = tiny_model(seed=1), tiny_model(seed=2)
    ensemble = Ensemble([a, b])
    image = torch.from_numpy(np.stack(arrays) / 100.0).float()[None]
    previous = torch.full((1, 1) + SHAPE, 0.3)
    positive = torch.zeros_like(previous)
    positive[0, 0, 6, 16, 16] = 1.0
    negative = torch.zeros_like(previous)
    inputs = (image, previous, positive, negative)
    expected = (a.refine_probability(*inputs) + b.refine_probability(*inputs)) / 2
    assert torch.allclose(ensemble.refine_probability(image, previous, positive, negative), expected)
    assert torch.allclose(ensemble.initial_probability(image), (a.initial_probability(image) + b.initial_probability(image)) / 2)
    assert not torch.allclose(a.initial_probability(image), b.initial_probability(image))
    # In a session every member gets the same clicks: the ensemble's result is the members' mean.
    session = session_for(ensemble, arrays, mode="whole", keep_largest=False)
    single = [session_for(m, arrays, mode="whole", keep_largest=False) for m in (a, b)]
    assert np.allclose(session.probability, (single[0].probability + single[1].probability) / 2, atol=1e-6)
    with pytest.raises(InputError, match="share modalities"):
        Ensemble([a, tiny_model(modalities=("ct",))])


def test_mirrored_pass_averages_with_the_pass_on_left_right_flipped_inputs(arrays, tmp_path):
    a = tiny_model(seed=1)
    image = torch.from_numpy(np.stack(arrays) / 100.0).float()[None]
    previous = torch.full((1, 1) + SHAPE, 0.3)
    positive = torch.zeros_like(previous)
    positive[0, 0, 6, 16, 20] = 1.0  # off the i axis's centre: the mirrored click lands elsewhere
    negative = torch.zeros_like(previous)
    inputs = (image, previous, positive, negative)
    mirrored = a.refine_probability(*(x.flip(-1) for x in inputs)).flip(-1)
    assert not torch.allclose(mirrored, a.refine_probability(*inputs))
    expected = (a.refine_probability(*inputs) + mirrored) / 2
    assert torch.allclose(Ensemble([a], flips=True).refine_probability(*inputs), expected)
    expected = (a.initial_probability(image) + a.initial_probability(image.flip(-1)).flip(-1)) / 2
    assert torch.allclose(Ensemble([a], flips=True).initial_probability(image), expected)
    # The loader adds the mirrored pass on request; one file without it is the bare model.
    path = save_model(a, tmp_path)
    assert load_click_model([path], flips=True).flips
    assert isinstance(load_click_model([path]), ICRModel)


def test_batch_norm_region_pass_equals_the_whole_pass_inside_the_region(arrays):
    """With fixed (batch-norm) statistics a network is local: once the dropped context band covers its
    receptive field, the pasted region is what the whole-volume pass gives there. Instance norm
    computes statistics over its input, so a region differs everywhere."""
    region = RegionSettings(size_mm=24.0, context_mm=8.0)
    inside = {}
    for norm in ("batch", "instance"):
        session = session_for(tiny_model(norm=norm), arrays, region=region)
        session.add_click((16, 16, 6), True)
        comparison = session.region_difference()
        assert comparison.region_voxels == 12 * 8 * 8  # all 12 slices (the box spans k), 24 - 2 * 8 columns
        inside[norm] = comparison.inside_max_abs_difference
    assert inside["batch"] < 1e-5 and inside["instance"] > 1e-2


@pytest.mark.parametrize("mode", ["region", "whole"])
def test_a_positive_click_outside_the_mask_adds_the_part_found_from_no_memory(model, arrays, mode):
    """``new_parts`` (the default): a positive click outside the mask also gets a pass from no memory, and that
    pass's connected part holding the click is added; nothing else changes, and undo takes it back. Clicks inside
    the mask, and negative ones, are refined as without it."""
    plain = session_for(model, arrays, mode=mode, new_parts=False)
    session = session_for(model, arrays, mode=mode)
    initial = session.probability.copy()
    outside = np.argwhere(~session.mask)
    k, j, i = outside[len(outside) // 2]
    plain.add_click((i, j, k), True)
    session.add_click((i, j, k), True)
    added = session.probability > plain.probability
    assert added.any()  # the pass from no memory found something beyond the plain refinement
    assert (session.probability >= plain.probability).all()
    labels, _ = ndimage.label(session.mask)
    assert set(np.unique(labels[added & session.mask])) == {labels[k, j, i]} != {0}
    session.undo()
    assert np.array_equal(session.probability, initial)
    for ijk, positive in [(np.argwhere(session.mask)[0][::-1], True), ((i, j, k), False)]:
        plain, session = session_for(model, arrays, mode=mode, new_parts=False), session_for(model, arrays, mode=mode)
        plain.add_click(tuple(ijk), positive)
        session.add_click(tuple(ijk), positive)
        assert np.array_equal(session.probability, plain.probability)

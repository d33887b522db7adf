"""The SCM network: decoder inputs, the full-resolution head, starting from trained weights, and its masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsert.completion.contract import competing_structures
from sparsert.completion.scm import load_scm, masks_from_probabilities, predict_probabilities
from sparsert.completion.scm_forward import scm_pass
from sparsert.data.datasets import open_dataset
from sparsert.errors import InputError
from sparsert.models.scm import SCMConfig, SCMNet
from sparsert.preprocessing.ct import ct_channels
from sparsert.scribbles.simulate import simulate_scribbles
from sparsert.training.scm import load_initial_weights


def _case_inputs(tiny_openkbp):
    dataset = open_dataset(str(tiny_openkbp))
    case = dataset.load(dataset.case_ids()[0])
    scribbles = simulate_scribbles(case.structures, seed=0, body_mask=case.possible_dose_mask.array)
    names = [s.name for s in case.structures.segments if scribbles[s.name].mask.any()]
    ct = case.images["ct"]
    stack = np.stack([scribbles[n].mask for n in names])
    return ct_channels(ct.array), stack, scribbles["Background"].mask, ct.geometry.spacing_kji


def test_a_head_added_to_trained_weights_starts_from_their_output(tiny_openkbp, tmp_path):
    torch.manual_seed(0)
    headless = SCMConfig(encoder_channels=(4, 8, 16, 32), decoder_channels=(4, 8), head_channels=0)
    weights = tmp_path / "headless.pt"
    torch.save({"model": SCMNet(headless).state_dict(), "config": headless.to_dict()}, weights)
    trained = load_scm(str(weights))
    assert trained.head is None
    with_head = SCMNet(SCMConfig(**{**headless.to_dict(), "head_channels": 8}))
    load_initial_weights(with_head, str(weights))
    with_head.eval()
    inputs = _case_inputs(tiny_openkbp)
    with torch.no_grad():
        before = scm_pass(trained, *inputs).structures
        after = scm_pass(with_head, *inputs).structures
    assert len(before) == len(after) > 1
    for a, b in zip(before, after):
        torch.testing.assert_close(a.logits, b.logits)
    # The head is trainable: its output layer receives gradients.
    with_head.train()
    scm_pass(with_head, *inputs).structures[0].logits.sum().backward()
    assert with_head.head.out.weight.grad.abs().sum() > 0


def test_a_head_widened_from_trained_weights_computes_what_they_did(tiny_openkbp, tmp_path):
    torch.manual_seed(0)
    narrow = SCMConfig(encoder_channels=(4, 8, 16, 32), decoder_channels=(4, 8), head_channels=4)
    net = SCMNet(narrow)
    torch.nn.init.normal_(net.head.out.weight)  # a trained head's output is not zero
    weights = tmp_path / "narrow.pt"
    torch.save({"model": net.state_dict(), "config": narrow.to_dict()}, weights)
    wide = SCMNet(SCMConfig(**{**narrow.to_dict(), "head_channels": 8}))
    load_initial_weights(wide, str(weights))
    wide.eval()
    inputs = _case_inputs(tiny_openkbp)
    with torch.no_grad():
        before = scm_pass(load_scm(str(weights)), *inputs).structures
        after = scm_pass(wide, *inputs).structures
    assert before[0].logits.abs().max() > 0
    for a, b in zip(before, after):
        torch.testing.assert_close(a.logits, b.logits)
    # The new channels learn: their weights into the output receive gradients.
    wide.train()
    scm_pass(wide, *inputs).structures[0].logits.sum().backward()
    assert wide.head.out.weight.grad[0, 4:].abs().sum() > 0
    # A narrower head than the weights' is refused.
    with pytest.raises(InputError, match="head_channels"):
        load_initial_weights(SCMNet(SCMConfig(**{**narrow.to_dict(), "head_channels": 2})), str(weights))


def test_the_head_normalises_each_channel_as_instance_normalisation_did():
    # The shipped weights were trained with instance normalisation in the head; its channels-last
    # group normalisation (one group per channel) must compute the same function.
    torch.manual_seed(0)
    head = SCMNet(SCMConfig(head_channels=8)).head.eval()
    torch.nn.init.normal_(head.out.weight)
    x = torch.randn(2, head.body[0].conv.in_channels, 10, 12, 14) * 3 + 1

    def channels_first_instance_norm(t: torch.Tensor) -> torch.Tensor:
        for block in head.body:
            t = block.adn.A(torch.nn.functional.instance_norm(block.conv(t)))
        return head.out(t)

    with torch.no_grad():
        torch.testing.assert_close(head(x), channels_first_instance_norm(x), atol=1e-5, rtol=1e-5)


def test_weights_of_another_network_are_refused():
    other = SCMNet(SCMConfig(encoder_channels=(4, 8, 16, 32)))
    with pytest.raises(InputError, match="do not fit"):
        load_initial_weights(other, "scm")


def test_without_clustering_the_decoder_ignores_similarities_but_not_scribbles():
    torch.manual_seed(0)
    net = SCMNet(SCMConfig(use_clustering=False, encoder_channels=(4, 8, 16, 32), decoder_channels=(4, 8), head_channels=4)).eval()
    shape = (1, 1, 8, 16, 16)
    inputs = dict(
        image=torch.rand((1, 2) + shape[2:]), own_similarity=torch.rand(shape), rival_similarity=torch.rand(shape),
        own_scribble=(torch.rand(shape) > 0.9).float(), background_scribble=(torch.rand(shape) > 0.9).float(),
        other_scribbles=torch.zeros(shape), own_distance=torch.rand(shape),
    )
    with torch.no_grad():
        reference = net.decode(**inputs)
        other_similarities = net.decode(**{**inputs, "own_similarity": -inputs["own_similarity"], "rival_similarity": torch.ones(shape)})
        other_scribble = net.decode(**{**inputs, "own_scribble": 1.0 - inputs["own_scribble"]})
    torch.testing.assert_close(reference, other_similarities)
    assert not torch.allclose(reference, other_scribble)


def test_masks_follow_the_overlap_rule_and_the_scribbles():
    # One row of voxels: PTV70, PTV63 (two targets: cannot overlap) and the Mandible (an organ: may
    # overlap either target).
    names = ["PTV70", "PTV63", "Mandible"]
    probs = np.zeros((3, 1, 1, 10), np.float32)
    probs[0, ..., 0:6] = [0.9, 0.9, 0.8, 0.95, 0.55, 0.4]
    probs[1, ..., 2:9] = [0.7, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9]
    probs[2, ..., 4:8] = 0.8
    scribbles = np.zeros((3, 1, 1, 10), bool)
    scribbles[0, ..., 0] = scribbles[1, ..., 7] = scribbles[2, ..., 5] = True
    scribbles[1, ..., 3] = True  # a PTV63 stroke where PTV70 is more probable: the stroke wins
    background = np.zeros((1, 1, 10), bool)
    background[..., 9] = True  # a background stroke inside PTV63's high probability
    competitors = competing_structures(names, scribbles)
    assert competitors == [frozenset({1}), frozenset({0}), frozenset()]
    masks = masks_from_probabilities(probs, scribbles, background, competitors)
    assert np.flatnonzero(masks[0]).tolist() == [0, 1, 2]
    assert np.flatnonzero(masks[1]).tolist() == [3, 4, 5, 6, 7, 8]
    assert np.flatnonzero(masks[2]).tolist() == [4, 5, 6, 7]
    assert not (masks[0] & masks[1]).any()


def test_flip_averaging_mirrors_exactly(tiny_openkbp):
    # Averaged with its mirrored pass, the prediction of mirrored inputs is the mirrored prediction.
    torch.manual_seed(0)
    net = SCMNet(SCMConfig(encoder_channels=(4, 8), feature_channels=4, decoder_channels=(4, 8), head_channels=4)).eval()
    image, stack, background, spacing = _case_inputs(tiny_openkbp)
    mirror = lambda a: np.ascontiguousarray(a[..., ::-1])  # noqa: E731
    exact = {"precision": "float32"}  # bfloat16 would round the two passes differently
    plain = predict_probabilities(net, image, stack, background, spacing, flips=True, **exact)
    mirrored = predict_probabilities(net, mirror(image), mirror(stack), mirror(background), spacing, flips=True, **exact)
    np.testing.assert_allclose(mirrored, plain[..., ::-1], atol=1e-5)
    single = predict_probabilities(net, image, stack, background, spacing, **exact)
    assert np.abs(single - plain).max() > 1e-3  # the network alone is not mirror-symmetric


def test_the_mirrored_pass_reuses_the_mirrored_distance_maps_exactly(tiny_openkbp):
    torch.manual_seed(0)
    net = SCMNet(SCMConfig(encoder_channels=(4, 8), feature_channels=4, decoder_channels=(4, 8), head_channels=4)).eval()
    image, stack, background, spacing = _case_inputs(tiny_openkbp)
    mirror = lambda a: np.ascontiguousarray(a[..., ::-1])  # noqa: E731
    with torch.no_grad():
        plain = scm_pass(net, image, stack, background, spacing)
        given = {out.index: out.distance[..., ::-1] for out in plain.structures}
        computed = scm_pass(net, mirror(image), mirror(stack), mirror(background), spacing).structures
        reused = scm_pass(net, mirror(image), mirror(stack), mirror(background), spacing, distances=given).structures
    assert len(reused) == len(computed) > 1
    for a, b in zip(computed, reused):
        np.testing.assert_array_equal(a.distance, b.distance)
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)


def test_bfloat16_probabilities_stay_close_to_float32(tiny_openkbp):
    torch.manual_seed(0)
    net = SCMNet(SCMConfig(encoder_channels=(4, 8), feature_channels=4, decoder_channels=(4, 8), head_channels=4)).eval()
    inputs = _case_inputs(tiny_openkbp)
    full = predict_probabilities(net, *inputs, precision="float32")
    half = predict_probabilities(net, *inputs, precision="bfloat16")
    assert half.dtype == np.float32 and half.shape == full.shape
    difference = np.abs(half - full)
    assert 0 < difference.max() < 0.05 and difference.mean() < 5e-3

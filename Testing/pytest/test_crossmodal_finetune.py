"""Per-case fine-tuning of a cross-modal model on the user's scribbles, on a real STS case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossmodal_testdata import one_thread, save_tiny_checkpoint  # noqa: F401 (one_thread: fixture)

from sparsert.crossmodal import TUMOUR, FineTuning, load_checkpoint, prepare_inputs, segment_tumour
from sparsert.crossmodal.finetune import fine_tuned, scribble_masks
from sparsert.crossmodal.inference import predict_probability
from sparsert.data.sts import GTV, read_sts_case
from sparsert.errors import InputError
from sparsert.evaluation.crossmodal import user_scribbles
from sparsert.io.segmentation import Segment, Segmentation

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def case(sts_dir):
    return read_sts_case(sts_dir / "STS_025")  # the smallest STS case


@pytest.fixture(scope="module")
def scribbles(case):
    return user_scribbles(case, slice_fraction=0.3, seed=1, body_threshold_hu=-500.0)


def test_fine_tuning_learns_the_scribbles_and_leaves_the_model_alone(case, scribbles, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path))
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    inputs = prepare_inputs(case.images["ct"], case.images["mr"], model.preprocessing)
    foreground, background = scribble_masks(scribbles, inputs, margin_mm=40.0)
    assert foreground.any() and background.any() and not (foreground & background).any()
    steps = []
    tuned = fine_tuned(model, inputs, scribbles, FineTuning(steps=25, lr=1e-2), on_step=lambda s, n: steps.append((s, n)))
    assert steps[-1] == (25, 25)
    old = predict_probability(model.net, inputs.ct, inputs.mr)
    new = predict_probability(tuned.net, inputs.ct, inputs.mr)
    # Towards the scribbles: higher on the tumour strokes, lower on the background strokes.
    assert new[foreground].mean() > old[foreground].mean() and new[background].mean() < old[background].mean()
    gap = lambda p: p[foreground].mean() - p[background].mean()  # noqa: E731
    assert gap(new) > gap(old) + 0.2
    assert all(torch.equal(before[k], v) for k, v in model.net.state_dict().items())


def test_segment_tumour_fine_tunes_when_given_scribbles(case, scribbles, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path))
    ct, mr = case.images["ct"], case.images["mr"]
    plain = segment_tumour(ct, mr, model, keep_largest=False)[TUMOUR].mask
    tuned = segment_tumour(ct, mr, model, keep_largest=False, scribbles=scribbles,
                           fine_tuning=FineTuning(steps=25, lr=1e-2))[TUMOUR].mask
    # On the CT grid: more of the tumour strokes inside the tumour, more of the background strokes outside.
    tumour, background = scribbles[GTV].mask, scribbles["Background"].mask
    assert tuned[tumour].mean() > plain[tumour].mean()
    assert tuned[background].mean() < plain[background].mean()


def test_background_is_automatic_when_none_is_drawn_and_a_tumour_stroke_is_required(case, scribbles, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path))
    inputs = prepare_inputs(case.images["ct"], case.images["mr"], model.preprocessing)
    tumour_only = Segmentation(scribbles.geometry, [scribbles[GTV]])
    foreground, background = scribble_masks(tumour_only, inputs, margin_mm=40.0)
    distance_ok = background.sum() > 0 and not background[foreground].any()
    assert distance_ok
    only_background = Segmentation(scribbles.geometry, [scribbles["Background"], Segment("Tumour", np.zeros_like(scribbles[GTV].mask))])
    with pytest.raises(InputError, match="my strokes: no tumour scribble"):
        fine_tuned(model, inputs, only_background, name="my strokes")
    with pytest.raises(InputError, match="steps must be at least 1"):
        fine_tuned(model, inputs, scribbles, FineTuning(steps=0))

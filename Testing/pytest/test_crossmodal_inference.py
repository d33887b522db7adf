"""Cross-modal tumour inference: segment_tumour on real STS images, fallbacks, bad input, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from crossmodal_testdata import COARSE, one_thread, save_tiny_checkpoint  # noqa: F401 (one_thread: fixture)

from sparsert.cli.main import main
from sparsert.crossmodal import TUMOUR, inference, load_checkpoint, load_model, segment_tumour
from sparsert.crossmodal.preprocess import body_mask, ct_in_hu, mr_on_grid
from sparsert.data.sts import read_sts_case
from sparsert.errors import InputError, MissingComponentError
from sparsert.io.segmentation_io import read_segmentation

CASE = "STS_025"  # the smallest STS case: fast
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def case(sts_dir):
    return read_sts_case(sts_dir / CASE)


def test_segmentation_lies_on_the_ct_grid_where_the_mr_covers_the_body(case, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path, bias=30.0))
    ct, mr = case.images["ct"], case.images["mr"]
    result = segment_tumour(ct, mr, model)
    assert result.names == [TUMOUR] and result.warnings == []
    assert result.geometry.matches(ct.geometry)
    # A network that calls everything tumour marks exactly the region it sees: the box of the body
    # covered by the MR, found on the CT grid through physical space and mapped back.
    _, covered = mr_on_grid(mr, ct.geometry)
    region = body_mask(ct_in_hu(ct), -500.0) & covered
    box = [(idx.min(), idx.max()) for idx in np.nonzero(region)]
    found = [(idx.min(), idx.max()) for idx in np.nonzero(result[TUMOUR].mask)]
    spacing = ct.geometry.spacing_kji
    for (lo, hi), (flo, fhi), s, working in zip(box, found, spacing, COARSE[::-1]):
        # Within one working voxel of the box on each side.
        assert abs(flo - lo) * s <= working and abs(fhi - hi) * s <= working


def test_no_tumour_found_is_reported(case, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path, bias=-30.0))
    result = segment_tumour(case.images["ct"], case.images["mr"], model)
    assert not result[TUMOUR].mask.any()
    assert any("no tumour found" in w for w in result.warnings)


def test_missing_mr_falls_back_to_the_ct(case, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path, bias=30.0))
    result = segment_tumour(case.images["ct"], None, model, ct_name="ct.nrrd")
    assert any("no MR given: segmenting from ct.nrrd alone" in w for w in result.warnings)
    # Without the MR the network sees the whole body.
    with_mr = segment_tumour(case.images["ct"], case.images["mr"], model)
    assert result[TUMOUR].mask.sum() > with_mr[TUMOUR].mask.sum()


def test_ct_only_model_ignores_the_mr(case, tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path, ct_only=True))
    assert segment_tumour(case.images["ct"], None, model).warnings == []
    result = segment_tumour(case.images["ct"], case.images["mr"], model, mr_name="t1.nrrd")
    assert result.warnings == ["the model is CT-only: t1.nrrd was not used"]


def test_large_volumes_go_through_windows(tmp_path, monkeypatch):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path))
    rng = np.random.default_rng(0)
    ct, mr = rng.random((2, 20, 40, 50), dtype=np.float32)
    whole = inference.predict_probability(model.net, ct, mr)
    monkeypatch.setattr(inference, "WHOLE_VOLUME_MAX_VOXELS", 1000)
    monkeypatch.setattr(inference, "WINDOW", (16, 32, 32))
    windowed = inference.predict_probability(model.net, ct, mr)
    assert windowed.shape == whole.shape == ct.shape
    assert 0.0 <= windowed.min() and windowed.max() <= 1.0
    assert not np.array_equal(windowed, whole)  # the windowed path ran


def test_the_context_ensemble_adds_the_training_patch_tiles(tmp_path):
    model = load_checkpoint(save_tiny_checkpoint(tmp_path))
    rng = np.random.default_rng(1)
    # A volume of exactly one tile: both contexts see the same input, so the ensemble is the one pass.
    ct, mr = rng.random((2, *inference.CONTEXT_TILE), dtype=np.float32)
    one = inference.predict_probability(model.net, ct, mr, contexts=False, precision="float32")
    np.testing.assert_allclose(inference.predict_probability(model.net, ct, mr, precision="float32"), one, atol=1e-5)
    # A larger volume: the tiles see less than the whole, and the mean of the two differs from either.
    ct, mr = rng.random((2, 40, 70, 90), dtype=np.float32)
    whole = inference.predict_probability(model.net, ct, mr, contexts=False, precision="float32")
    mean = inference.predict_probability(model.net, ct, mr, precision="float32")
    assert mean.shape == whole.shape == ct.shape and 0.0 <= mean.min() and mean.max() <= 1.0
    assert np.abs(mean - whole).max() > 1e-4


def test_bad_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(InputError, match=r"other\.pt: not a cross-modal segmentation checkpoint"):
        load_checkpoint(path)


def test_models_resolve_by_name():
    assert load_model().source.endswith("crossmodal-v1.pt")  # the shipped default
    with pytest.raises(MissingComponentError, match=r"no model named 'no-such-model' for crossmodal"):
        load_model("no-such-model")


def test_cli(sts_dir, tmp_path, capsys):
    folder = sts_dir / CASE
    checkpoint = save_tiny_checkpoint(tmp_path / "run", bias=30.0)
    out = tmp_path / "tumour.seg.nrrd"
    ct, mr = str(folder / "CT_image.nii.gz"), str(folder / "MR_T1_image.nii.gz")
    argv = ["crossmodal", "--ct", ct, "--mr", mr, "--out", str(out), "--model", str(checkpoint), "--device", "cpu"]
    assert main(argv) == 0
    assert "tumour" in capsys.readouterr().out
    seg = read_segmentation(out)
    assert seg.names == [TUMOUR] and seg[TUMOUR].mask.any()
    assert seg.geometry.matches(read_sts_case(folder).geometry)
    # CT alone: the fallback, with its warning.
    assert main(["crossmodal", "--ct", ct, "--out", str(tmp_path / "ct.seg.nrrd"), "--model", str(checkpoint)]) == 0
    assert "warning: no MR given" in capsys.readouterr().err
    # Without --model the shipped one runs.
    assert main(["crossmodal", "--ct", ct, "--mr", mr, "--out", str(tmp_path / "x.seg.nrrd")]) == 0
    assert read_segmentation(tmp_path / "x.seg.nrrd")[TUMOUR].mask.any()
    capsys.readouterr()
    # An existing output is not replaced; a transform needs an MR.
    assert main(["crossmodal", "--ct", ct, "--mr", mr, "--out", str(out), "--model", str(checkpoint)]) == 1
    assert "already exists" in capsys.readouterr().err
    transform = tmp_path / "t.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3), str(transform))
    assert main(["crossmodal", "--ct", ct, "--transform", str(transform), "--out", str(tmp_path / "y.seg.nrrd"),
                 "--model", str(checkpoint)]) == 1
    assert "--transform applies to the MR" in capsys.readouterr().err


def test_cli_fine_tunes_on_the_scribbles_of_the_case(case, sts_dir, tmp_path, capsys):
    from sparsert.evaluation.crossmodal import user_scribbles
    from sparsert.io.segmentation_io import write_segmentation

    folder = sts_dir / CASE
    checkpoint = save_tiny_checkpoint(tmp_path / "run", bias=30.0)
    scribbles = tmp_path / "strokes.seg.nrrd"
    write_segmentation(user_scribbles(case, 0.3, 1, -500.0), scribbles)
    before = scribbles.read_bytes()
    ct, mr = str(folder / "CT_image.nii.gz"), str(folder / "MR_T1_image.nii.gz")
    out = tmp_path / "tumour.seg.nrrd"
    argv = ["crossmodal", "--ct", ct, "--mr", mr, "--out", str(out), "--model", str(checkpoint),
            "--scribbles", str(scribbles), "--fine-tune-steps", "3"]
    assert main(argv) == 0
    assert f"fine-tuned for 3 steps on {scribbles}" in capsys.readouterr().out
    assert read_segmentation(out)[TUMOUR].mask.any()
    assert scribbles.read_bytes() == before  # the user's scribbles are only read
    assert main(["crossmodal", "--data", str(sts_dir), "--scribbles", str(scribbles), "--out", str(tmp_path / "c")]) == 1
    assert "--scribbles are for one case" in capsys.readouterr().err

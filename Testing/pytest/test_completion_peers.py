"""Classical scribble-completion peers on a real OpenKBP crop: quality, contract, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from sparsert.completion import METHODS, CompletedSegmentation, complete_growcut, complete_random_walker, complete_scm
from sparsert.completion.contract import prepare_seeds
from sparsert.completion.evaluate import SOFT_TISSUE_HU
from sparsert.data.case_folder import read_case_folder
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.metrics.segmentation import dice
from sparsert.preprocessing.ct import ct_to_hu
from sparsert.scribbles import BACKGROUND_NAME, simulate_scribbles

# [k, j, i] crop of pt_201 around the mandible, parotids and cord: 40 x 64 x 64 voxels.
CROP = (slice(25, 65), slice(35, 99), slice(31, 95))
ORGANS = ["Mandible", "LeftParotid", "RightParotid"]


@pytest.fixture(scope="module")
def crop(openkbp_nifti) -> tuple[Volume, Segmentation]:
    case = read_case_folder(openkbp_nifti / "validation" / "pt_201")
    ct = case.images["ct"]
    k, j, i = CROP
    # SimpleITK slicing keeps the crop's physical position.
    image = Volume.from_sitk(ct.to_sitk()[i.start : i.stop, j.start : j.stop, k.start : k.stop])
    image = image.with_array(ct_to_hu(image.array))
    segments = [Segment(s.name, s.mask[CROP], s.color) for s in case.structures.segments]
    structures = Segmentation(image.geometry, segments)
    return image, structures


def _subset(segmentation: Segmentation, names: list[str]) -> Segmentation:
    return Segmentation(segmentation.geometry, [s for s in segmentation.segments if s.name in names])


@pytest.fixture(scope="module")
def scribbles(crop) -> Segmentation:
    _, structures = crop
    return simulate_scribbles(_subset(structures, [*ORGANS, "PTV70"]), seed=0)


def test_registry_lists_the_peers_and_the_learned_model():
    assert METHODS == {"scm": complete_scm, "growcut": complete_growcut, "randomwalker": complete_random_walker}


def test_growcut_completes_the_mandible_and_keeps_the_contract(crop, scribbles):
    image, structures = crop
    completed = complete_growcut(image, scribbles)
    assert isinstance(completed, CompletedSegmentation) and completed.warnings == []
    assert completed.geometry == image.geometry
    assert completed.names == ["LeftParotid", "Mandible", "PTV70", "RightParotid"]  # scribbles' order
    assert [s.color for s in completed.segments] == [scribbles[n].color for n in completed.names]
    assert dice(completed["Mandible"].mask, structures["Mandible"].mask) > 0.7
    assert dice(completed["PTV70"].mask, structures["PTV70"].mask) > 0.5


def test_random_walker_completes_the_mandible(crop, scribbles):
    image, structures = crop
    organs = _subset(scribbles, [*ORGANS, BACKGROUND_NAME])
    completed = complete_random_walker(image, organs, window=SOFT_TISSUE_HU)
    assert completed.names == ["LeftParotid", "Mandible", "RightParotid"] and completed.geometry == image.geometry
    assert dice(completed["Mandible"].mask, structures["Mandible"].mask) > 0.7
    assert dice(completed["LeftParotid"].mask, structures["LeftParotid"].mask) > 0.3


def test_targets_overlap_organs_unless_told_otherwise(crop, scribbles):
    image, structures = crop
    assert (structures["PTV70"].mask & structures["Mandible"].mask).any()
    both = _subset(scribbles, ["Mandible", "PTV70", BACKGROUND_NAME])
    overlapping = complete_growcut(image, both)
    assert (overlapping["PTV70"].mask & overlapping["Mandible"].mask).any()
    exclusive = complete_growcut(image, both, may_overlap=lambda a, b: False)
    assert not (exclusive["PTV70"].mask & exclusive["Mandible"].mask).any()


def test_competitors_follow_names_and_shared_scribble_voxels():
    geometry = Geometry((4, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    image = Volume(np.zeros(geometry.shape, dtype=np.int16), geometry)
    names = ["PTV70", "Parotid_L", "Mandible", "ptv56", "Cord", BACKGROUND_NAME]
    masks = {name: np.zeros(geometry.shape, dtype=bool) for name in names}
    for n, name in enumerate(masks):
        masks[name][1, n, 1] = True
    masks["Cord"][1, 2, 1] = True  # shares a voxel with the mandible scribble
    seeds = prepare_seeds(image, Segmentation(geometry, [Segment(n, m) for n, m in masks.items()]))
    by_name = {name: {seeds.names[m] for m in competitors} for name, competitors in zip(seeds.names, seeds.competitors)}
    assert by_name == {
        "PTV70": {"ptv56"},
        "Parotid_L": {"Mandible", "Cord"},
        "Mandible": {"Parotid_L"},
        "ptv56": {"PTV70"},
        "Cord": {"Parotid_L"},
    }
    assert sorted(map(sorted, seeds.exclusive_groups())) == [[0, 3], [1], [2], [4]]


@pytest.mark.parametrize("method", [complete_growcut, complete_random_walker])
def test_structure_scribbled_on_one_slice_completes_in_3d(crop, scribbles, method):
    image, structures = crop
    drawn = scribbles["Mandible"].mask
    slices = np.flatnonzero(drawn.any(axis=(1, 2)))
    single = np.zeros_like(drawn)
    single[slices[len(slices) // 2]] = drawn[slices[len(slices) // 2]]
    one = Segmentation(image.geometry, [Segment("Mandible", single), scribbles[BACKGROUND_NAME]])
    completed = method(image, one)
    assert len(np.flatnonzero(completed["Mandible"].mask.any(axis=(1, 2)))) >= 3


def test_growcut_stays_inside_the_region(crop, scribbles):
    image, _ = crop
    region = np.zeros(image.geometry.shape, dtype=bool)
    region[:, :, :40] = True
    completed = complete_growcut(image, _subset(scribbles, ["Mandible", BACKGROUND_NAME]), region=region)
    assert completed["Mandible"].mask.any() and not (completed["Mandible"].mask & ~region).any()


@pytest.mark.parametrize("method", [complete_growcut, complete_random_walker])
def test_missing_or_empty_background_is_refused_unless_automatic(crop, scribbles, method):
    image, _ = crop
    without = _subset(scribbles, ["Mandible"])
    with pytest.raises(InputError, match="no 'Background' segment"):
        method(image, without)
    empty = _subset(scribbles, ["Mandible"])
    empty.add(BACKGROUND_NAME, np.zeros(image.geometry.shape, dtype=bool))
    with pytest.raises(InputError, match="empty 'Background' segment"):
        method(image, empty)
    completed = method(image, without, auto_background=True, background_margin_mm=15.0)
    assert completed["Mandible"].mask.any()
    assert any("Background" in w and "15 mm" in w for w in completed.warnings)


def test_empty_structure_scribble_is_skipped_with_a_warning(crop, scribbles):
    image, _ = crop
    with_empty = _subset(scribbles, ["Mandible", BACKGROUND_NAME])
    with_empty.add("Larynx", np.zeros(image.geometry.shape, dtype=bool))
    completed = complete_growcut(image, with_empty)
    assert completed.names == ["Mandible"]
    assert completed.warnings == ["scribble segment 'Larynx' is empty; it was skipped"]


def test_background_alone_is_refused(crop, scribbles):
    image, _ = crop
    with pytest.raises(InputError, match="no scribbled structure"):
        complete_growcut(image, _subset(scribbles, [BACKGROUND_NAME]))


def test_scribbles_on_another_grid_are_refused(crop, scribbles):
    image, _ = crop
    geometry = image.geometry
    shifted = Geometry(geometry.shape, geometry.spacing, (0.0, 0.0, 0.0), geometry.direction)
    moved = Segmentation(shifted, [Segment(s.name, s.mask, s.color) for s in scribbles.segments])
    with pytest.raises(InputError, match="different grid") as error:
        complete_random_walker(image, moved)
    assert shifted.describe() in str(error.value) and geometry.describe() in str(error.value)
    with pytest.raises(InputError, match="region mask"):
        complete_growcut(image, scribbles, region=np.ones((2, 2, 2), dtype=bool))

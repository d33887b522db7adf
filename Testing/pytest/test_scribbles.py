"""Simulated scribbles: inside their structures, on the chosen slices, reproducible; automatic background."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from sparsert.data.case_folder import read_case_folder
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry
from sparsert.scribbles import BACKGROUND_NAME, automatic_background, scribble_stats, simulate_scribbles

# Around the mandible, parotids, cord and PTVs of OpenKBP pt_201 ([k, j, i], 40 x 64 x 64).
CROP = (slice(25, 65), slice(35, 99), slice(31, 95))


@pytest.fixture(scope="module")
def structures(openkbp_nifti) -> Segmentation:
    case = read_case_folder(openkbp_nifti / "validation" / "pt_201")
    shape = tuple(s.stop - s.start for s in CROP)
    geometry = Geometry(shape, case.geometry.spacing, case.geometry.origin, case.geometry.direction)
    segments = [Segment(s.name, s.mask[CROP], s.color) for s in case.structures.segments if s.mask[CROP].any()]
    return Segmentation(geometry, segments)


def _geometry(shape, spacing=(1.0, 1.0, 1.0)) -> Geometry:
    return Geometry(shape, spacing, (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def _box_structure(name="Box", slices=range(5, 25)) -> Segmentation:
    """A 9 x 13 voxel box on 20 consecutive axial slices of a 30 x 32 x 32 grid."""
    mask = np.zeros((30, 32, 32), dtype=bool)
    mask[list(slices), 10:19, 8:21] = True
    return Segmentation(_geometry(mask.shape), [Segment(name, mask, (1.0, 0.0, 0.0))])


@pytest.mark.parametrize("style, width", [("line", 1), ("dot", 1), ("mixed", 1), ("line", 3)])
def test_scribbles_lie_strictly_inside_their_structure(structures, style, width):
    scribbles = simulate_scribbles(structures, style=style, line_width_vox=width, seed=3)
    for seg in structures.segments:
        drawn = scribbles[seg.name].mask
        assert drawn.any(), f"{seg.name} got no scribble"
        assert not (drawn & ~seg.mask).any(), f"{seg.name} scribble leaves the structure"


def test_names_colours_and_background_segment(structures):
    scribbles = simulate_scribbles(structures, seed=0)
    assert scribbles.names == [*structures.names, BACKGROUND_NAME]
    assert [s.color for s in scribbles.segments[:-1]] == [s.color for s in structures.segments]
    assert scribbles.geometry == structures.geometry


def test_background_is_outside_every_structure(structures):
    scribbles = simulate_scribbles(structures, seed=1)
    union = np.logical_or.reduce([s.mask for s in structures.segments])
    background = scribbles[BACKGROUND_NAME].mask
    assert background.any()
    assert not (background & union).any()
    # Background strokes are on a subset of slices, about half of those near the structures.
    drawn = np.flatnonzero(background.any(axis=(1, 2)))
    assert 0.3 * background.shape[0] <= len(drawn) <= 0.7 * background.shape[0]


def test_background_stays_mostly_inside_a_given_body(structures):
    body = np.zeros(structures.geometry.shape, dtype=bool)
    body[:, 5:60, 5:60] = True
    background = simulate_scribbles(structures, body_mask=body, seed=2)[BACKGROUND_NAME].mask
    inside = np.count_nonzero(background & body)
    assert inside > 0.5 * np.count_nonzero(background)


def test_same_seed_same_scribbles_other_seed_other_scribbles(structures):
    first = simulate_scribbles(structures, style="mixed", seed=7)
    again = simulate_scribbles(structures, style="mixed", seed=7)
    other = simulate_scribbles(structures, style="mixed", seed=8)
    for name in first.names:
        assert np.array_equal(first[name].mask, again[name].mask)
    assert any(not np.array_equal(first[name].mask, other[name].mask) for name in first.names)


@pytest.mark.parametrize("fraction, count, step", [(0.5, 10, 2), (0.25, 5, 4), (1.0, 20, 1)])
def test_slice_fraction_picks_evenly_spaced_slices(fraction, count, step):
    box = _box_structure()
    for seed in range(3):
        drawn = simulate_scribbles(box, slice_fraction=fraction, background=False, seed=seed)["Box"].mask
        slices = np.flatnonzero(drawn.any(axis=(1, 2)))
        assert len(slices) == count
        assert set(np.diff(slices)) == {step}
        assert 5 <= slices.min() and slices.max() <= 24


def test_structure_on_one_slice_gets_that_slice():
    drawn = simulate_scribbles(_box_structure(slices=[12]), slice_fraction=0.1, background=False, seed=0)["Box"].mask
    assert np.flatnonzero(drawn.any(axis=(1, 2))).tolist() == [12]


def test_mixed_style_varies_the_slice_fraction(structures):
    counts = set()
    for seed in range(6):
        drawn = simulate_scribbles(structures, style="mixed", background=False, seed=seed)["PTV70"].mask
        counts.add(int(drawn.any(axis=(1, 2)).sum()))
    assert len(counts) > 1


def test_line_follows_the_long_axis_away_from_the_edge():
    # A 9 x 13 cross-section eroded once is 7 x 11; its medial axis runs along the long (i) axis
    # for at least 11 - 7 + 1 = 5 voxels, in the middle rows.
    box = _box_structure(slices=[12])
    drawn = simulate_scribbles(box, path_fraction=(1.0, 1.0), background=False, seed=0)["Box"].mask[12]
    rows, cols = np.nonzero(drawn)
    assert np.all((rows >= 11) & (rows <= 17) & (cols >= 9) & (cols <= 19))
    assert np.ptp(cols) >= 4 and np.ptp(rows) <= 2
    assert ndi.label(drawn, structure=np.ones((3, 3)))[1] == 1


def test_tiny_structure_gets_a_dot():
    mask = np.zeros((10, 16, 16), dtype=bool)
    mask[4, 7:9, 7:9] = True
    tiny = Segmentation(_geometry(mask.shape), [Segment("Tiny", mask)])
    drawn = simulate_scribbles(tiny, background=False, seed=0)["Tiny"].mask
    assert np.count_nonzero(drawn) == 1
    assert drawn[4, 7:9, 7:9].any()


def test_scribble_stats_coverage():
    box = _box_structure()  # 20 slices of 9 x 13 = 2340 voxels
    scribbles = simulate_scribbles(box, style="dot", background=False, seed=0)
    stats = scribble_stats(scribbles, box)["Box"]
    assert (stats.voxels, stats.slices, stats.structure_slices) == (10, 10, 20)
    assert stats.coverage == pytest.approx(10 / 2340)


def test_bad_options_are_refused():
    box = _box_structure()
    with pytest.raises(InputError, match="style"):
        simulate_scribbles(box, style="zigzag")
    with pytest.raises(InputError, match="slice_fraction"):
        simulate_scribbles(box, slice_fraction=0.0)
    with pytest.raises(InputError, match="body mask"):
        simulate_scribbles(box, body_mask=np.ones((2, 2, 2), dtype=bool))
    box.add("background", np.zeros(box.geometry.shape, dtype=bool))
    with pytest.raises(InputError, match="Background"):
        simulate_scribbles(box)


def test_automatic_background_is_everything_beyond_the_margin():
    geometry = _geometry((9, 9, 9), spacing=(1.0, 1.0, 2.0))  # k spacing 2 mm
    foreground = np.zeros(geometry.shape, dtype=bool)
    foreground[4, 4, 4] = True
    background = automatic_background(foreground, geometry, margin_mm=3.0)
    assert not background[4, 4, 4 + 3] and background[4, 4, 4 + 4]  # i: 3 mm is not beyond, 4 mm is
    assert not background[4 + 1, 4, 4] and background[4 + 2, 4, 4]  # k: 2 mm is not, 4 mm is
    assert not background[5, 5, 6] and background[5, 6, 6]  # sqrt(4+1+4)=3, sqrt(4+4+4)>3
    with pytest.raises(InputError, match="non-empty"):
        automatic_background(np.zeros(geometry.shape, dtype=bool), geometry)

"""Evaluation of completion methods: per-case scoring and the summary table."""

from __future__ import annotations

import numpy as np
import pytest

from sparsert.completion import completer
from sparsert.completion.evaluate import CaseResult, evaluate_case, format_summary, summarize
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume


@pytest.fixture
def bright_cube() -> tuple[Volume, Segmentation]:
    """A 100 HU cube of 12 x 14 x 14 voxels in a uniform 0 HU block, and the cube as a structure."""
    geometry = Geometry((30, 32, 32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    cube = np.zeros(geometry.shape, dtype=bool)
    cube[9:21, 9:23, 9:23] = True
    image = Volume(np.where(cube, 100, 0).astype(np.int16), geometry)
    empty = np.zeros(geometry.shape, dtype=bool)
    return image, Segmentation(geometry, [Segment("Cube", cube), Segment("Absent", empty)])


def test_growcut_recovers_a_sharp_cube(bright_cube):
    image, structures = bright_cube
    [result] = evaluate_case("cube", image, structures, {"growcut": completer("growcut")}, seed=0)
    assert list(result.dice) == ["Cube"]  # empty structures are not scored
    assert result.dice["Cube"] > 0.95
    # 1 x 1 x 2 mm voxels: a near-perfect cube is within a voxel or two of the truth.
    assert result.hd95_mm["Cube"] <= 2.0 and result.asd_mm["Cube"] < 1.0
    assert 0.0 < result.coverage["Cube"] < 0.1
    assert result.seconds > 0.0 and result.method == "growcut"


def test_unknown_method_is_refused(bright_cube):
    image, structures = bright_cube
    with pytest.raises(InputError, match="unknown completion method 'magic'"):
        evaluate_case("cube", image, structures, {"magic": completer("magic")})


def test_summary_averages_per_structure_over_the_cases_holding_it():
    results = [
        CaseResult("a", "growcut", 2.0, {"A": 0.5, "B": 1.0}, {}, {"A": 4.0, "B": 0.0}, {"A": 1.0, "B": 0.0}),
        CaseResult("b", "growcut", 4.0, {"A": 0.7}, {}, {"A": 2.0}, {"A": 0.5}),
        CaseResult("a", "randomwalker", 1.0, {"A": 0.9}, {}, {"A": float("inf")}, {"A": float("inf")}),
    ]
    summary = summarize(results)
    assert summary["growcut"] == pytest.approx(
        {"A": 0.6, "B": 1.0, "mean": 2.2 / 3, "seconds": 3.0, "hd95_mm": 2.0, "asd_mm": 0.5}
    )
    assert summary["randomwalker"] == pytest.approx(
        {"A": 0.9, "mean": 0.9, "seconds": 1.0, "hd95_mm": float("inf"), "asd_mm": float("inf")}
    )
    table = format_summary(summary).splitlines()
    assert table[0].split() == ["structure", "growcut", "randomwalker"]
    assert table[2].split() == ["B", "1.000", "-"]

"""Interactive-segmentation metrics: number of clicks (NoC) to reach a quality threshold.

A case's scores are one value per interaction state: index 0 is the score before any click
(e.g. the automatic or scribble-completed result), index n the score after n clicks. NoC@t is
the first index whose score reaches t. Following the usual convention of the interactive
segmentation literature (RITM, f-BRS: NoC@85 / NoC@90 with 20 clicks), a case that does not
reach t within ``max_clicks`` is a failure and counts as ``max_clicks`` in the mean NoC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparsert.errors import InputError
from sparsert.metrics._checks import finite_array


def clicks_to_reach(
    scores_per_click: Sequence[float], threshold: float, higher_is_better: bool = True, max_clicks: int = 20
) -> int | None:
    """Number of clicks after which the score first reaches ``threshold``; None if not within ``max_clicks``.

    "Reaches" is ``>=`` when ``higher_is_better`` (Dice, IoU), otherwise ``<=`` (HD95, ASD).
    Scores after index ``max_clicks`` are ignored.
    """
    scores = finite_array(scores_per_click, "scores per click")
    if scores.ndim != 1 or scores.size == 0:
        raise InputError(f"scores per click must be a non-empty 1D sequence, got shape {scores.shape}")
    if int(max_clicks) < 0:
        raise InputError(f"max_clicks must be >= 0, got {max_clicks}")
    window = scores[: int(max_clicks) + 1]
    reached = window >= threshold if higher_is_better else window <= threshold
    return int(np.argmax(reached)) if reached.any() else None


def noc_summary(
    case_scores: Sequence[Sequence[float]],
    thresholds: Sequence[float],
    max_clicks: int = 20,
    higher_is_better: bool = True,
) -> dict:
    """Mean NoC and failures over cases, for each threshold.

    Returns ``{"n_cases", "max_clicks", "thresholds": [{"threshold", "mean_noc", "failures",
    "failure_percent"}, ...]}``; failures count as ``max_clicks`` in ``mean_noc``.
    """
    if len(case_scores) == 0:
        raise InputError("no cases to summarise")
    if len(thresholds) == 0:
        raise InputError("no thresholds given")
    rows = []
    for threshold in thresholds:
        clicks = [clicks_to_reach(scores, threshold, higher_is_better, max_clicks) for scores in case_scores]
        failures = sum(c is None for c in clicks)
        rows.append(
            {
                "threshold": float(threshold),
                "mean_noc": float(np.mean([max_clicks if c is None else c for c in clicks])),
                "failures": failures,
                "failure_percent": 100.0 * failures / len(clicks),
            }
        )
    return {"n_cases": len(case_scores), "max_clicks": int(max_clicks), "thresholds": rows}

"""Evaluation of click refinement on cases with a reference tumour mask.

Per case: the automatic result (0 clicks), then up to ``max_clicks`` simulated clicks, each placed
from the current mask's errors (``interior``: the deterministic most-interior error voxel;
``sampled``: drawn with probability proportional to the border distance, seeded), through the same
:class:`RefinementSession` the application uses. Scores: Dice and HD95 after each click, clicks
needed to reach Dice 0.75 / 0.85 and HD95 5 / 2.5 mm (failures beyond ``max_clicks`` count as
``max_clicks``, see :mod:`sparsert.metrics.interactive`), mask voxels changed per click, seconds
per click. When the mask has no error left, later clicks repeat the last scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsert.errors import InputError
from sparsert.interactive.clicks import interior_click, sample_click
from sparsert.interactive.inference import RegionSettings
from sparsert.interactive.session import RefinementSession
from sparsert.metrics.interactive import noc_summary
from sparsert.metrics.segmentation import dice, hd95
from sparsert.models.icr import ClickModel
from sparsert.training.icr_data import ICRCase
from sparsert.io.output import writable

PROTOCOLS = ("interior", "sampled")
REPORT_CLICKS = (0, 1, 5, 10)
DICE_THRESHOLDS = (0.75, 0.85)
HD95_THRESHOLDS_MM = (5.0, 2.5)


@dataclass
class Trajectory:
    case_id: str
    dice: list[float]  # index n: after n clicks
    hd95_mm: list[float]  # inf while the mask is empty
    changed_voxels: list[int]  # per click
    seconds: list[float]  # per click
    clicks: list[dict]
    initial_seconds: float = 0.0  # the automatic result


def click_trajectory(
    model: ClickModel,
    case: ICRCase,
    max_clicks: int = 20,
    protocol: str = "interior",
    mode: str = "whole",
    region: RegionSettings = RegionSettings(),
    seed: int = 0,
    honour_clicks: bool = True,
    keep_largest: bool = True,
    new_parts: bool = True,
) -> Trajectory:
    session = RefinementSession(
        model, case.image, case.geometry, mode=mode, region=region, honour_clicks=honour_clicks, keep_largest=keep_largest,
        new_parts=new_parts,
    )
    return session_trajectory(session, case.truth, case.case_id, max_clicks, protocol, seed)


def session_trajectory(
    session: RefinementSession,
    truth: np.ndarray,
    case_id: str = "",
    max_clicks: int = 20,
    protocol: str = "interior",
    seed: int = 0,
) -> Trajectory:
    """The automatic result of ``session``, then up to ``max_clicks`` simulated clicks placed from the
    errors against ``truth`` (bool, on the session's working grid)."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown click protocol '{protocol}' (known: {', '.join(PROTOCOLS)})")
    rng = np.random.default_rng(seed)
    initial = session.initial()
    spacing = session.geometry.spacing_kji
    scores = [(dice(session.mask, truth), hd95(session.mask, truth, spacing))]
    changed, seconds, clicks = [], [], []
    for _ in range(max_clicks):
        mask = session.mask
        if protocol == "interior":
            click = interior_click(mask, truth, spacing)
        else:
            click = sample_click(mask, truth, spacing, rng)
        if click is None:
            break
        # Clicks are placed on the working grid; through physical space they reach the session's
        # reference grid (the same grid unless the session was built from images of another spacing).
        ras = session.geometry.ijk_to_ras() @ np.append(click.kji[::-1], 1.0)
        result = session.add_click_ras(ras[:3], click.positive)
        changed.append(result.changed_voxels)
        seconds.append(result.seconds)
        clicks.append({"kji": list(click.kji), "positive": click.positive})
        scores.append((dice(session.mask, truth), hd95(session.mask, truth, spacing)))
    scores += [scores[-1]] * (max_clicks + 1 - len(scores))
    return Trajectory(
        case_id, [s[0] for s in scores], [s[1] for s in scores], changed, seconds, clicks, initial.seconds
    )


def _finite_mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def summarize(trajectories: Sequence[Trajectory], max_clicks: int = 20) -> dict:
    if not trajectories:
        raise InputError("no cases to summarise")
    dice_curves = np.array([t.dice for t in trajectories])
    hd_curves = np.array([t.hd95_mm for t in trajectories])
    at = [n for n in REPORT_CLICKS if n <= max_clicks]
    # An empty mask has no finite HD95; it reaches no distance threshold, as a large distance would not.
    hd_finite = np.where(np.isfinite(hd_curves), hd_curves, 1e9)
    changed = [v for t in trajectories for v in t.changed_voxels]
    seconds = [v for t in trajectories for v in t.seconds]
    return {
        "n_cases": len(trajectories),
        "max_clicks": max_clicks,
        "dice_at": {str(n): {"mean": float(dice_curves[:, n].mean()), "std": float(dice_curves[:, n].std())} for n in at},
        "hd95_mm_at": {
            str(n): {"mean_finite": _finite_mean(hd_curves[:, n]), "n_infinite": int(np.sum(~np.isfinite(hd_curves[:, n])))}
            for n in at
        },
        "dice_curve": [float(v) for v in dice_curves.mean(0)],
        "noc_dice": noc_summary(dice_curves.tolist(), DICE_THRESHOLDS, max_clicks=max_clicks),
        "noc_hd95_mm": noc_summary(hd_finite.tolist(), HD95_THRESHOLDS_MM, max_clicks=max_clicks, higher_is_better=False),
        "mean_voxels_changed_per_click": float(np.mean(changed)) if changed else 0.0,
        "mean_seconds_per_click": float(np.mean(seconds)) if seconds else 0.0,
    }


def evaluate_cross_validation(
    folds: Iterable[tuple[ClickModel, Iterable[ICRCase]]],
    max_clicks: int = 20,
    protocol: str = "interior",
    mode: str = "whole",
    region: RegionSettings = RegionSettings(),
    seed: int = 0,
    honour_clicks: bool = True,
    keep_largest: bool = True,
    new_parts: bool = True,
) -> dict:
    """Each fold's model on the cases that fold held out: the summary over all cases (see
    :func:`summarize`) with the per-case trajectories, JSON-ready, plus each fold's own summary under
    ``folds``."""
    everything: list[Trajectory] = []
    per_fold = []
    for model, cases in folds:
        trajectories = [
            click_trajectory(
                model, case, max_clicks, protocol, mode, region, seed + len(everything) + n, honour_clicks, keep_largest,
                new_parts,
            )
            for n, case in enumerate(cases)
        ]
        fold = summarize(trajectories, max_clicks)
        per_fold.append({key: fold[key] for key in ("n_cases", "dice_at", "noc_dice", "noc_hd95_mm")})
        everything += trajectories
    result = summarize(everything, max_clicks)
    result.update(
        protocol=protocol, mode=mode, honour_clicks=honour_clicks, keep_largest=keep_largest, new_parts=new_parts,
        cases=[t.__dict__ for t in everything], folds=per_fold,
    )
    return result


def evaluate_refinement(model: ClickModel, cases: Iterable[ICRCase], **options: Any) -> dict:
    """One model on ``cases``: :func:`evaluate_cross_validation` of a single fold, without ``folds``."""
    result = evaluate_cross_validation([(model, cases)], **options)
    del result["folds"]
    return result


def plot_dice_curves(results: Mapping[str, dict], path: str | Path, overwrite: bool = False) -> Path:
    """Mean Dice against number of clicks, one line per result (e.g. method or ensemble), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path = writable(path, overwrite)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, result in results.items():
        curve = result["dice_curve"]
        ax.plot(range(len(curve)), curve, marker="o", markersize=3, label=f"{label} (n={result['n_cases']})")
    for threshold in DICE_THRESHOLDS:
        ax.axhline(threshold, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

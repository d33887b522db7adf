"""Cross-validated scoring of cross-modal tumour models: Dice, ASD and HD95 on each held-out case.

Each trained fold (a run folder with ``best.pt``) is scored on the patients its checkpoint records
as held out, end to end: the raw CT and MR go through :func:`segment_tumour` and the result is
compared with the reference tumour on the CT grid.

With ``fine_tuning`` each held-out case is first given simulated user scribbles (the project's
generator on the CT grid, drawn from the reference tumour with a seed of its own, plus background
strokes) and a copy of the model is fine-tuned on them before it segments: the per-case fine-tuning
a physicist gets in CrossModalSeg.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sparsert.crossmodal.finetune import FineTuning
from sparsert.crossmodal.inference import CHECKPOINT_KIND, TUMOUR, load_checkpoint, segment_tumour
from sparsert.crossmodal.preprocess import body_mask, ct_in_hu
from sparsert.data.datasets import Dataset
from sparsert.data.sts import GTV
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.metrics.segmentation import average_surface_distance, dice, hd95
from sparsert.models.model_file import read_model_file
from sparsert.scribbles import simulate_scribbles

METRICS = ("dice", "asd_mm", "hd95_mm")


def fold_checkpoints(runs: list[Path]) -> list[Path]:
    """``best.pt`` of each run folder; a folder without one stands for its ``fold_*`` run folders."""
    found = []
    for run in runs:
        if (run / "best.pt").is_file():
            found.append(run / "best.pt")
            continue
        folds = sorted(p / "best.pt" for p in run.glob("fold_*") if (p / "best.pt").is_file())
        if not folds:
            raise InputError(f"{run}: no best.pt, neither in the folder nor in fold_* run folders")
        found += folds
    return found


def scored_cases(checkpoint: Path, training: bool = False) -> list[str]:
    """The patients ``checkpoint`` held out, or with ``training`` those it was trained on (scoring them
    checks a model, it does not measure generalisation)."""
    metadata = read_model_file(checkpoint, CHECKPOINT_KIND).get("metadata", {})
    cases = metadata.get("train_cases" if training else "test_cases")
    if cases:
        return list(cases)
    if training:
        raise InputError(f"{checkpoint}: records no training cases (train it with `sparsert train crossmodal`)")
    trained_on_all = bool(metadata.get("train_cases")) and metadata.get("fold", 0) is None
    why = "it was trained on every case (--all-cases)" if trained_on_all else "train it with `sparsert train crossmodal`"
    raise InputError(f"{checkpoint}: records no held-out cases to score ({why})")


def evaluate_crossmodal(
    dataset: Dataset,
    checkpoints: list[Path],
    *,
    device: str | torch.device = "cpu",
    fine_tuning: FineTuning | None = None,
    scribble_fraction: float = 0.3,
    scribble_seed: int = 1,
    contexts: bool = True,
    precision: str = "auto",
    training: bool = False,
    on_case: Callable[[str], None] | None = None,
) -> dict:
    """Per-case scores of every checkpoint on its held-out cases (``training``: on the cases it trained
    on instead), and their summary; with ``fine_tuning``, after fine-tuning on scribbles over
    ``scribble_fraction`` of the tumour's slices; ``contexts`` and ``precision``: see :func:`segment_tumour`."""
    rows = []
    which = "training" if training else "held-out"
    for checkpoint in checkpoints:
        model = load_checkpoint(checkpoint, device)
        for case_id in scored_cases(checkpoint, training):
            if case_id not in dataset:
                raise InputError(f"{checkpoint}: {which} case '{case_id}' is not in {dataset.root}")
            case = dataset.load(case_id)
            scribbles = None
            if fine_tuning is not None:
                scribbles = user_scribbles(case, scribble_fraction, scribble_seed, model.preprocessing.body_threshold_hu)
            start = time.perf_counter()
            result = segment_tumour(
                case.images["ct"], case.images.get("mr"), model,
                ct_name=str(case.files.get("ct", case_id)), mr_name=str(case.files.get("mr", case_id)),
                contexts=contexts, precision=precision, scribbles=scribbles, fine_tuning=fine_tuning,
            )
            seconds = time.perf_counter() - start
            predicted, reference = result[TUMOUR].mask, case.structures[GTV].mask
            spacing = case.geometry.spacing_kji
            rows.append({
                "case_id": case_id,
                "model": str(checkpoint),
                "dice": dice(predicted, reference),
                "asd_mm": average_surface_distance(predicted, reference, spacing),
                "hd95_mm": hd95(predicted, reference, spacing),
                "seconds": seconds,
                "fine_tuned": scribbles is not None,
                "warnings": result.warnings,
            })
            if on_case:
                on_case(case_id)
    summary = {}
    for key in METRICS + ("seconds",):
        values = np.array([r[key] for r in rows], dtype=float)
        summary[key] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "median": float(np.median(values))}
    settings = None if fine_tuning is None else {
        **vars(fine_tuning), "scribble_fraction": scribble_fraction, "scribble_seed": scribble_seed}
    return {"n_cases": len(rows), "n_models": len(checkpoints), "cases_scored": which, "contexts": contexts,
            "precision": precision, "fine_tuning": settings, "summary": summary, "cases": rows}


def user_scribbles(case, slice_fraction: float, seed: int, body_threshold_hu: float) -> Segmentation:
    """Tumour lines on ``slice_fraction`` of the tumour's axial slices and background strokes in the
    body, on the CT grid, as a user would paint them."""
    ct = case.images["ct"]
    body = body_mask(ct_in_hu(ct), body_threshold_hu)
    tumour = Segmentation(ct.geometry, [Segment(GTV, case.structures[GTV].mask)])
    return simulate_scribbles(tumour, slice_fraction=slice_fraction, style="line", body_mask=body, seed=seed)

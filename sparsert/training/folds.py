"""Cross-validation folds by patient, shared by every cross-validated training and evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from sparsert.errors import InputError


def cv_folds(case_ids: Sequence[str], n_folds: int = 5) -> list[list[str]]:
    """Patients dealt round-robin, in the given (data set) order, into ``n_folds`` test folds."""
    if not 2 <= n_folds <= len(case_ids):
        raise InputError(f"{n_folds} folds need at least {n_folds} cases and n_folds >= 2; got {len(case_ids)} case(s)")
    return [list(case_ids[f::n_folds]) for f in range(n_folds)]


def fold_split(case_ids: Sequence[str], fold: int, n_folds: int = 5) -> tuple[list[str], list[str]]:
    """(training ids, held-out ids) of ``fold``."""
    folds = cv_folds(case_ids, n_folds)
    if not 0 <= fold < n_folds:
        raise InputError(f"fold {fold} does not exist: folds are 0..{n_folds - 1}")
    held_out = folds[fold]
    return [c for c in case_ids if c not in held_out], held_out

"""DVH tables (CSV) and plots (PNG) of a predicted dose, with the reference dose when there is one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.metrics.dvh import dvh_curve


def dvh_table(dose: Volume, structures: Segmentation, bin_width_gy: float = 0.1, max_dose: float | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cumulative DVH (dose levels in Gy, % volume) of every non-empty structure."""
    top = max_dose if max_dose is not None else float(dose.array.max())
    return {
        s.name: dvh_curve(dose.array, s.mask, bin_width_gy=bin_width_gy, max_dose=top)
        for s in structures.segments
        if s.mask.any()
    }


def write_dvh_csv(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, label: str = "predicted") -> Path:
    """Long-format CSV: dose_type, structure, dose_gy, volume_percent."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dose_type", "structure", "dose_gy", "volume_percent"])
        for name, (levels, percent) in curves.items():
            for gy, pct in zip(levels, percent):
                writer.writerow([label, name, f"{gy:.2f}", f"{pct:.3f}"])
    return path


def plot_dvh(
    structures: Segmentation,
    predicted: dict[str, tuple[np.ndarray, np.ndarray]],
    reference: dict[str, tuple[np.ndarray, np.ndarray]] | None,
    path: str | Path,
    title: str = "Dose-volume histogram",
) -> Path:
    """DVH plot in the structures' colours: predicted solid, reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for seg in structures.segments:
        if seg.name in predicted:
            levels, percent = predicted[seg.name]
            ax.plot(levels, percent, color=seg.color, lw=1.8, label=seg.name)
        if reference and seg.name in reference:
            levels, percent = reference[seg.name]
            ax.plot(levels, percent, color=seg.color, lw=1.2, ls="--")
    ax.set_xlabel("Dose (Gy)")
    ax.set_ylabel("Volume (%)")
    ax.set_ylim(0, 101)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.set_title(title + ("  (solid: predicted, dashed: reference)" if reference else ""), fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)

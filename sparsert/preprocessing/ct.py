"""CT intensities: Hounsfield units and network input channels."""

from __future__ import annotations

import numpy as np

# OpenKBP stores CT as HU + 1024 (values 0..4095, none negative); a CT in HU holds air near -1000 or, cropped
# inside the body, fat below 0.
OPENKBP_HU_OFFSET = 1024.0
# The wide channel is HU / 1000 clipped to -1000..2000 HU, so HU are recovered inside that range.
WIDE_WINDOW_HU = 1000.0


def ct_to_hu(ct: np.ndarray) -> np.ndarray:
    """CT in Hounsfield units, undoing a +1024 storage offset when the array has no negative value."""
    ct = ct.astype(np.float32)
    if ct.min() >= 0.0:
        ct = ct - OPENKBP_HU_OFFSET
    return ct


def soft_tissue_window(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """HU mapped to 0..1 over a window (default: soft tissue, -160..240 HU)."""
    lo = level - width / 2
    return np.clip((hu - lo) / width, 0.0, 1.0).astype(np.float32)


def ct_channels(ct: np.ndarray) -> np.ndarray:
    """Network input channels from a CT array: a wide window and a soft-tissue window, (2, ...)."""
    hu = ct_to_hu(ct)
    wide = np.clip(hu, -1000.0, 2000.0) / WIDE_WINDOW_HU
    return np.stack([wide.astype(np.float32), soft_tissue_window(hu)])

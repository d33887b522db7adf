"""Dose, DVH, segmentation and interactive-segmentation metrics (exact, documented conventions)."""

from sparsert.metrics.dose import (
    OPENKBP_METRIC_KEYS,
    OPENKBP_ORGANS,
    OPENKBP_TARGETS,
    DoseCase,
    homogeneity_index,
    openkbp_dose_error,
    openkbp_dvh_metrics,
    openkbp_scores,
    paddick_conformity_index,
    plan_quality_errors,
    target_coverage_d95,
    target_prescriptions,
)
from sparsert.metrics.dvh import d_cc, dose_at_volume, dvh_curve, dvh_curve_cc, mean_dose, volume_at_dose
from sparsert.metrics.interactive import clicks_to_reach, noc_summary
from sparsert.metrics.segmentation import average_surface_distance, dice, hd95, surface_distances

__all__ = [
    "OPENKBP_METRIC_KEYS",
    "OPENKBP_ORGANS",
    "OPENKBP_TARGETS",
    "DoseCase",
    "average_surface_distance",
    "clicks_to_reach",
    "d_cc",
    "dice",
    "dose_at_volume",
    "dvh_curve",
    "dvh_curve_cc",
    "hd95",
    "homogeneity_index",
    "mean_dose",
    "noc_summary",
    "openkbp_dose_error",
    "openkbp_dvh_metrics",
    "openkbp_scores",
    "paddick_conformity_index",
    "plan_quality_errors",
    "surface_distances",
    "target_coverage_d95",
    "target_prescriptions",
    "volume_at_dose",
]

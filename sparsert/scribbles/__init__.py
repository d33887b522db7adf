"""Scribbles: simulated user scribbles (for training and evaluation) and automatic background."""

from sparsert.scribbles.background import automatic_background
from sparsert.scribbles.simulate import BACKGROUND_NAME, ScribbleStats, scribble_stats, simulate_scribbles

__all__ = ["BACKGROUND_NAME", "ScribbleStats", "automatic_background", "scribble_stats", "simulate_scribbles"]

"""Dose prediction from a CT and its structures (or scribbles): inputs, working grid, inference."""

"""Training losses, grouped by task."""

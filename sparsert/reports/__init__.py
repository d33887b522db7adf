"""Human-readable outputs: DVH tables and plots, metric tables."""

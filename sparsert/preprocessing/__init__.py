"""Image preprocessing shared by the models (intensity normalisation, windows)."""

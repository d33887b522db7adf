"""Training: run folders, configurations, cached preprocessing and the training loops."""

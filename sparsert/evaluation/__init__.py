"""Evaluation of predictions against references, on files and whole data sets."""

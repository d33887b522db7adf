"""Data sets of radiotherapy cases: readers of the supported layouts, detection and conversion."""

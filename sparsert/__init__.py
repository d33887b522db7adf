"""SparseRT core: radiotherapy planning from sparse annotations.

Pure Python (no Qt, no Slicer application): importable in Slicer's Python and in a plain
virtual environment alike.
"""

__version__ = "0.1.0"

"""InteractiveRefine's Qt-free code: importable in Slicer and with the slicer-core wheel (tests)."""

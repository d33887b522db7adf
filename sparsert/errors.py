"""Exceptions raised for problems a user can fix.

Everything a user can get wrong (a missing file, mismatched grids, an empty structure) is raised
as an :class:`InputError` whose message names the file or object and the problem, so that the CLI
and the Slicer modules can show one clear line instead of a traceback.
"""

from __future__ import annotations


class SparseRTError(Exception):
    """Base class of all errors SparseRT reports to users."""


class InputError(SparseRTError, ValueError):
    """Bad input: a file, array or option the user gave cannot be used as it is."""


class MissingComponentError(SparseRTError):
    """A step needs a component (a trained model, an optional package) that is not available."""


class Cancelled(SparseRTError):
    """The user cancelled a running task; nothing was added or changed."""

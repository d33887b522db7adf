"""The Python packages SparseRT needs beyond what Slicer ships, installed on first use.

Slicer's Python already has numpy, SimpleITK, vtk and pydicom; those are never replaced (an
install is constrained to the versions present). PyTorch comes through Slicer's PyTorch extension
when it is installed (it picks the build that fits the machine's GPU), else from pip. Nothing here
imports Qt or Slicer: the modules pass in how to ask the user and how to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

from sparsert.errors import MissingComponentError

# Import name -> pip requirement (as in pyproject.toml).
REQUIREMENTS = {
    "torch": "torch>=2.3",
    "monai": "monai>=1.4",
    "scipy": "scipy>=1.10",
    "skimage": "scikit-image>=0.22",
    "slicerio": "slicerio>=1.1",
    "matplotlib": "matplotlib>=3.7",
    "tqdm": "tqdm>=4.60",
    "yaml": "PyYAML>=6.0",
}
# Distributions of Slicer's own Python that an install must leave as they are.
PROTECTED = ("numpy", "SimpleITK", "vtk", "pydicom")


def missing_packages(requirements: dict[str, str] = REQUIREMENTS) -> list[str]:
    """Import names in ``requirements`` that this Python cannot import."""
    return [name for name in requirements if not _importable(name)]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken installation counts as missing
        return False


def install_missing(
    confirm: Callable[[str], bool],
    pip_install: Callable[[str], object],
    install_torch: Callable[[], bool] | None = None,
    requirements: dict[str, str] = REQUIREMENTS,
) -> list[str]:
    """Install what is missing after one confirmation; returns the requirements installed.

    ``confirm(message)`` asks the user; ``pip_install(arguments)`` runs pip in this Python (Slicer's
    ``slicer.util.pip_install``); ``install_torch()`` installs PyTorch another way (the PyTorch
    extension) and returns False when it cannot. Raises :class:`MissingComponentError` when the
    user declines, naming what is missing.
    """
    missing = missing_packages(requirements)
    if not missing:
        return []
    wanted = [requirements[name] for name in missing]
    if not confirm(
        f"SparseRT needs Python packages that are not installed yet: {', '.join(wanted)}. "
        "Install them now? This takes a few minutes and needs the internet once."
    ):
        raise MissingComponentError(f"SparseRT cannot run without {', '.join(wanted)}: the installation was declined")
    if "torch" in missing and install_torch is not None and install_torch():
        wanted.remove(requirements["torch"])
    if wanted:
        with tempfile.TemporaryDirectory() as folder:
            constraints = Path(folder) / "slicer-constraints.txt"
            constraints.write_text("".join(f"{line}\n" for line in protected_pins()))
            pip_install(" ".join([*wanted, "-c", str(constraints)]))
    still = missing_packages(requirements)
    if still:
        raise MissingComponentError(f"installing {', '.join(missing)} left {', '.join(still)} unimportable; see the log")
    return [requirements[name] for name in missing]


def protected_pins() -> list[str]:
    """``name==version`` of each protected distribution present here."""
    pins = []
    for name in PROTECTED:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pins


def slicer_torch_installer() -> Callable[[], bool] | None:
    """Installing PyTorch through Slicer's PyTorch extension (``PyTorchUtils``), or None without it."""
    try:
        import PyTorchUtils  # a Slicer module of the SlicerPyTorch extension
    except ImportError:
        return None

    def install() -> bool:
        return PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is not None

    return install


def install_in_slicer() -> list[str]:
    """:func:`install_missing` with Slicer's confirmation dialog, its pip and the PyTorch extension;
    for the module widgets (imports Slicer's GUI utilities, so only call it inside Slicer)."""
    import slicer.util

    return install_missing(slicer.util.confirmOkCancelDisplay, slicer.util.pip_install, slicer_torch_installer())

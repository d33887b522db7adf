"""First-use installation of the packages Slicer's Python lacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sparsert.dependencies import REQUIREMENTS, install_missing, missing_packages, protected_pins
from sparsert.errors import MissingComponentError

ABSENT = {"numpy": "numpy>=1", "sparsert_no_such_package": "sparsert-no-such-package>=1"}


def test_everything_the_core_needs_is_importable_here():
    assert missing_packages() == []
    assert set(REQUIREMENTS) >= {"torch", "monai", "skimage", "slicerio"}


def test_nothing_is_asked_or_installed_when_nothing_is_missing():
    asked = []
    assert install_missing(asked.append, asked.append, requirements={"numpy": "numpy>=1"}) == []
    assert asked == []


def test_declining_names_what_is_missing_and_installs_nothing():
    installed = []
    with pytest.raises(MissingComponentError, match="sparsert-no-such-package>=1: the installation was declined"):
        install_missing(lambda message: False, installed.append, requirements=ABSENT)
    assert installed == []


def test_pip_gets_only_the_missing_requirements_with_slicers_packages_pinned():
    calls, questions = [], []

    def confirm(message):
        questions.append(message)
        return True

    def pip_install(arguments):
        requirement, flag, constraints = arguments.split(" ")
        calls.append((requirement, flag, open(constraints).read()))

    # The package stays missing (nothing can install it here): the failure says so.
    with pytest.raises(MissingComponentError, match="left sparsert_no_such_package unimportable"):
        install_missing(confirm, pip_install, requirements=ABSENT)
    assert len(questions) == 1 and "sparsert-no-such-package>=1" in questions[0] and "numpy" not in questions[0]
    [(requirement, flag, constraints)] = calls
    assert requirement == "sparsert-no-such-package>=1" and flag == "-c"
    assert constraints.splitlines() == protected_pins() and any(p.startswith("numpy==") for p in protected_pins())


def test_module_logics_load_in_a_python_without_those_packages():
    """Slicer imports the modules at startup, before anything could be installed (Slicer ships scipy)."""
    root = Path(__file__).resolve().parents[2]
    absent = sorted(set(REQUIREMENTS) - {"scipy"})
    script = f"""
import importlib, importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ImportError(name)
sys.meta_path.insert(0, Absent())
sys.path[:0] = [{str(root)!r}] + [{str(root)!r} + "/" + m for m in ("ScribbleDose", "InteractiveRefine", "CrossModalSeg")]
for module in ("ScribbleDoseLib.logic", "InteractiveRefineLib.logic", "CrossModalSegLib.logic", "sparsert.dependencies"):
    importlib.import_module(module)
print(sorted(importlib.import_module("sparsert.dependencies").missing_packages()))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(absent)

"""Scene bundles (``.mrb``): the scene file and every node's data in one zip, as Slicer saves them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import slicer

from sparsert.errors import InputError
from sparsert.mrml.scene import HeadlessSlicer
from sparsert.io.output import writable


def write_scene_bundle(scene, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``scene`` with all its data to ``path`` (``.mrb``); refuses to replace a file unless asked."""
    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise InputError(f"{path}: a scene bundle must end in .mrb")
    path = writable(path, overwrite)
    messages = slicer.vtkMRMLMessageCollection()
    if not scene.WriteToMRB(str(path.resolve()), None, messages):
        raise InputError(f"{path}: the scene could not be saved ({_describe(messages)})")
    return path


def read_scene_bundle(path: str | Path) -> HeadlessSlicer:
    """A new headless scene holding the bundle at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: scene bundle not found")
    headless = HeadlessSlicer()
    # Slice nodes read from the scene file look their orientation up in presets the application adds.
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(headless.scene)
    messages = slicer.vtkMRMLMessageCollection()
    # The bundle is unpacked into the data IO manager's cache folder, which the application sets
    # up; the data are in memory once read, so the unpacked copy is removed afterwards.
    with tempfile.TemporaryDirectory(prefix="sparsert-mrb-") as cache_dir:
        cache = slicer.vtkCacheManager()
        cache.SetRemoteCacheDirectory(cache_dir)
        io_manager = slicer.vtkDataIOManager()
        io_manager.SetCacheManager(cache)
        headless.scene.SetCacheManager(cache)
        headless.scene.SetDataIOManager(io_manager)
        ok = headless.scene.ReadFromMRB(str(path.resolve()), True, messages)
        headless.scene.SetDataIOManager(None)
        headless.scene.SetCacheManager(None)
    if not ok:
        raise InputError(f"{path}: not a readable scene bundle ({_describe(messages)})")
    return headless


def _describe(messages) -> str:
    text = messages.GetAllMessagesAsString().strip()
    return text.splitlines()[0] if text else "no detail given"

"""Scalar volumes: :class:`Volume` <-> ``vtkMRMLScalarVolumeNode``."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from sparsert.errors import InputError
from sparsert.io.volume import Geometry, Volume
from sparsert.mrml.geometry import geometry_from_ijk_to_ras, parent_to_world


def volume_from_node(node) -> Volume:
    """A copy of a scalar volume node's voxels with their world geometry (parent transforms applied)."""
    geometry = volume_node_geometry(node)
    # arrayFromVolume is a view into memory VTK owns and may reallocate: keep a copy.
    return Volume(np.array(slicer.util.arrayFromVolume(node)), geometry)


def volume_node_geometry(node) -> Geometry:
    """The world grid of a scalar volume node, without copying its voxels."""
    if node is None:
        raise InputError("no volume selected")
    name = f"volume '{node.GetName()}'"
    image = node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"{name} has no image data")
    if image.GetNumberOfScalarComponents() != 1:
        raise InputError(f"{name} has {image.GetNumberOfScalarComponents()} components per voxel; expected a scalar volume")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = parent_to_world(node) @ slicer.util.arrayFromVTKMatrix(matrix)
    i, j, k = image.GetDimensions()
    return geometry_from_ijk_to_ras(ijk_to_ras, (k, j, i), name)


def update_volume_node(node, volume: Volume) -> None:
    """Replace a volume node's voxels and grid with ``volume`` (expressed in world RAS).

    Under a parent transform the node's own matrix is set so that the voxels land at the same world
    positions. Booleans become uint8; 64-bit integers become int32 when they fit (VTK cannot
    display 64-bit voxels).
    """
    to_parent = np.linalg.inv(parent_to_world(node))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(to_parent @ volume.geometry.ijk_to_ras()))
    slicer.util.updateVolumeFromArray(node, _vtk_compatible(volume.array, node.GetName()))


def add_volume_node(scene, volume: Volume, name: str):
    """A new ``vtkMRMLScalarVolumeNode`` in ``scene`` holding ``volume``, with default display."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    update_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def _vtk_compatible(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype in (np.int64, np.uint64):
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InputError(f"volume '{name}': 64-bit integer values outside the int32 range cannot be shown in Slicer")
        return array.astype(np.int32)
    return array

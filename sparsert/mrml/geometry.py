"""Voxel grids across the bridge: our LPS :class:`Geometry` and MRML's RAS matrices.

MRML keeps a volume's grid as an IJK-to-RAS matrix (plus the parent transforms of the node);
:class:`Geometry` is the same grid in ITK's LPS frame. The two differ by a flip of the first two
world axes, ``diag(-1, -1, 1)``, which is its own inverse.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from sparsert.errors import InputError
from sparsert.io.volume import Geometry

RAS_LPS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def geometry_from_ijk_to_ras(ijk_to_ras: np.ndarray, shape: tuple[int, int, int], what: str = "image") -> Geometry:
    """The grid of ``shape`` ([k, j, i]) whose voxel indices map to RAS through ``ijk_to_ras``."""
    ijk_to_lps = RAS_LPS_FLIP @ np.asarray(ijk_to_ras, dtype=float)
    axes = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if not np.all(spacing > 0):
        raise InputError(f"{what}: IJK-to-RAS matrix has a zero-length axis (spacing {tuple(spacing)})")
    return Geometry(
        shape=tuple(int(n) for n in shape),
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in ijk_to_lps[:3, 3]),
        direction=tuple(float(d) for d in (axes / spacing).ravel()),
    )


def transformed(geometry: Geometry, matrix: np.ndarray) -> Geometry:
    """The same voxels after moving them by the 4x4 RAS matrix ``matrix``."""
    return geometry_from_ijk_to_ras(matrix @ geometry.ijk_to_ras(), geometry.shape)


def parent_to_world(node) -> np.ndarray:
    """4x4 matrix from the node's own frame to world RAS (identity when it has no parent transform).

    Non-linear parent transforms cannot be expressed as a grid and are refused.
    """
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise InputError(
            f"'{node.GetName()}' is under the non-linear transform '{transform.GetName()}'; harden the transform first"
        )
    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def oriented_image_geometry(image, what: str = "image") -> Geometry:
    """The grid of a ``vtkOrientedImageData`` over its extent (which need not start at 0)."""
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    ijk_to_ras = slicer.util.arrayFromVTKMatrix(matrix)
    i0, i1, j0, j1, k0, k1 = image.GetExtent()
    if i1 < i0 or j1 < j0 or k1 < k0:
        raise InputError(f"{what}: empty extent {image.GetExtent()}")
    ijk_to_ras[:3, 3] = (ijk_to_ras @ np.array([i0, j0, k0, 1.0]))[:3]
    return geometry_from_ijk_to_ras(ijk_to_ras, (k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1), what)


def oriented_image(geometry: Geometry, mask: np.ndarray | None = None):
    """A ``vtkOrientedImageData`` on ``geometry``: uint8 voxels from ``mask``, or the grid alone when None."""
    image = slicer.vtkOrientedImageData()
    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras()))
    k, j, i = geometry.shape
    image.SetExtent(0, i - 1, 0, j - 1, 0, k - 1)
    if mask is not None:
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        oriented_image_array(image)[:] = mask
    return image


def oriented_image_array(image) -> np.ndarray:
    """The voxels of an image as a [k, j, i] view into VTK's memory (copy before keeping it)."""
    i0, i1, j0, j1, k0, k1 = image.GetExtent()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    return scalars.reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)

"""Structures: :class:`Segmentation` <-> ``vtkMRMLSegmentationNode``.

Each segment keeps its own binary labelmap, so overlapping structures (a PTV over a parotid)
survive the trip. The node's reference image geometry is set to the segmentation's grid, which is
what Slicer's Segment Editor paints on.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry
from sparsert.masks import bounding_box
from sparsert.mrml.geometry import (
    oriented_image,
    oriented_image_array,
    oriented_image_geometry,
    parent_to_world,
    transformed,
)
from sparsert.mrml.volume import volume_node_geometry


def segmentation_from_node(node, geometry: Geometry | None = None) -> Segmentation:
    """Every segment of ``node`` as a mask on ``geometry`` (world RAS; default: the node's reference geometry).

    Segments are resampled by nearest neighbour when their labelmaps lie on another grid; segments
    with only a closed-surface representation are first converted to labelmaps.
    """
    if node is None:
        raise InputError("no segmentation selected")
    name = f"segmentation '{node.GetName()}'"
    to_world = parent_to_world(node)
    if geometry is None:
        geometry = transformed(_reference_geometry(node, name), to_world)
    # Segment labelmaps live in the node's own frame; sample them on the target grid expressed there.
    reference = oriented_image(transformed(geometry, np.linalg.inv(to_world)))
    if node.GetSegmentation().GetNumberOfSegments() and not node.CreateBinaryLabelmapRepresentation():
        raise InputError(f"{name}: its segments cannot be converted to binary labelmaps")
    segments = []
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        mask = _segment_mask(node, segment_id, reference, geometry.shape)
        segments.append(Segment(segment.GetName(), mask, tuple(float(c) for c in segment.GetColor())))
    return Segmentation(geometry, segments)


def update_segmentation_node(node, segmentation: Segmentation, reference_volume_node=None) -> None:
    """Replace all segments of ``node`` with those of ``segmentation``.

    ``reference_volume_node``, when given, must be on the segmentation's grid; it becomes the
    volume the Segment Editor shows these segments on.
    """
    if reference_volume_node is not None:
        volume_geometry = volume_node_geometry(reference_volume_node)
        if not volume_geometry.matches(segmentation.geometry):
            raise InputError(
                f"reference volume '{reference_volume_node.GetName()}' ({volume_geometry.describe()}) is not on the "
                f"grid of the segmentation ({segmentation.geometry.describe()})"
            )
    local = transformed(segmentation.geometry, np.linalg.inv(parent_to_world(node)))
    target = node.GetSegmentation()
    target.RemoveAllSegments()
    target.SetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(),
        slicer.vtkSegmentationConverter.SerializeImageGeometry(oriented_image(local)),
    )
    node.SetSourceRepresentationToBinaryLabelmap()
    for segment in segmentation.segments:
        node.AddSegmentFromBinaryLabelmapRepresentation(oriented_image(local, segment.mask), segment.name, segment.color)
    if reference_volume_node is not None:
        node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference_volume_node.GetID())


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The smallest [k, j, i] box holding every voxel where two masks differ (None: they are equal)."""
    return bounding_box(before != after)  # type: ignore[return-value]


def update_segment_region(node, name: str, mask: np.ndarray, geometry: Geometry, box: tuple[slice, slice, slice]) -> None:
    """Rewrite segment ``name`` of ``node`` inside ``box`` only, with ``mask[box]``.

    ``mask`` lies on ``geometry``, the grid of the node's labelmaps (as :func:`update_segmentation_node`
    leaves it); voxels outside ``box`` are not touched, so a click that changes a small region costs
    a small write however large the image.
    """
    segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(name)
    if not segment_id:
        raise InputError(f"segmentation '{node.GetName()}' has no segment '{name}'")
    if mask.shape != geometry.shape:
        raise InputError(f"mask of shape {mask.shape} is not on the grid {geometry.describe()}")
    local = transformed(geometry, np.linalg.inv(parent_to_world(node)))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    # MODE_REPLACE ignores the extent and replaces the whole segment; clearing the box (minimum with
    # zeros) and then adding the new voxels (maximum) touches the box alone, as the Segment Editor does.
    for values, mode in ((np.zeros(mask[box].shape, bool), logic.MODE_MERGE_MIN), (mask[box], logic.MODE_MERGE_MAX)):
        image = _box_image(local, box, values)
        if not logic.SetBinaryLabelmapToSegment(image, node, segment_id, mode, image.GetExtent()):
            raise InputError(f"segment '{name}' of '{node.GetName()}' could not be updated")


def _box_image(geometry: Geometry, box: tuple[slice, slice, slice], values: np.ndarray):
    """A uint8 ``vtkOrientedImageData`` of ``values`` over ``box`` of ``geometry``; its extent keeps the
    whole grid's indices, so the voxels stay where they are in the world."""
    image = oriented_image(geometry)
    k, j, i = box
    image.SetExtent(i.start, i.stop - 1, j.start, j.stop - 1, k.start, k.stop - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    oriented_image_array(image)[:] = values
    return image


def add_segmentation_node(scene, segmentation: Segmentation, name: str, reference_volume_node=None):
    """A new ``vtkMRMLSegmentationNode`` in ``scene`` holding ``segmentation``, with default display."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    update_segmentation_node(node, segmentation, reference_volume_node)
    return node


def _reference_geometry(node, name: str) -> Geometry:
    serialized = node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    )
    if not serialized:
        raise InputError(f"{name} has no reference geometry; choose the image it belongs to")
    image = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, image, False)
    return oriented_image_geometry(image, f"{name} reference geometry")


def _segment_mask(node, segment_id: str, reference, shape: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    labelmap = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(segment_id, labelmap)
    if labelmap.GetPointData().GetScalars() is None or labelmap.IsEmpty():
        return mask
    resampled = slicer.vtkOrientedImageData()
    if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
        labelmap, reference, resampled, False, False
    ):
        raise InputError(f"segment '{node.GetSegmentation().GetSegment(segment_id).GetName()}' could not be resampled")
    if resampled.IsEmpty():
        return mask
    # The resampled extent is the overlap of the segment with the reference grid, not the whole grid.
    i0, i1, j0, j1, k0, k1 = resampled.GetExtent()
    mask[k0 : k1 + 1, j0 : j1 + 1, i0 : i1 + 1] = oriented_image_array(resampled) > 0
    return mask

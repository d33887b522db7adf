"""Isodose surfaces: one model per level, shown as lines in the slice views.

As SlicerRT's Isodose module: contour the dose in voxel space, smooth, map to RAS with the volume's
IJK-to-RAS matrix (the model shares the dose's parent transform), and tag each model with
``DicomRtImport.IsodoseModel``. Here contouring is ``vtkFlyingEdges3D`` (SlicerRT uses marching
cubes) and every level gets its own model node in a subject hierarchy folder under the dose, so
that levels can be shown and hidden one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import slicer
import vtk

from sparsert.mrml.dose import subject_hierarchy_item

ISODOSE_MODEL_ATTRIBUTE = "DicomRtImport.IsodoseModel"
ISODOSE_PERCENT_ATTRIBUTE = "SparseRT.IsodosePercent"
ISODOSE_GY_ATTRIBUTE = "SparseRT.IsodoseGy"
# Opacity of the surfaces in 3D: nested levels stay visible through each other.
SURFACE_OPACITY = 0.25
LINE_THICKNESS = 2  # pixels, in slice views


@dataclass
class Isodoses:
    """The isodose folder (subject hierarchy item), its models and colour table, lowest level first."""

    folder_item: int
    models: list
    color_table: object


def add_isodose_models(scene, dose_node, levels: Sequence[tuple[float, float, tuple[float, float, float]]]) -> Isodoses:
    """A model per (percent, Gy, RGB) level that the dose reaches, under a folder below the dose.

    Levels above the maximum dose get no model (there is no surface to draw); the colour table
    lists every requested level, named by its percentage as SlicerRT's relative isodose tables are.
    """
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    name = dose_node.GetName()
    folder = sh.CreateFolderItem(subject_hierarchy_item(dose_node), f"{name}_IsodoseSurfaces")
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", f"{name}_IsodoseColorTable")
    table.SetTypeToUser()
    table.SetNumberOfColors(len(levels))
    table.GetLookupTable().SetTableRange(0, max(len(levels) - 1, 0))
    for index, (percent, _, rgb) in enumerate(levels):
        table.SetColor(index, f"{percent:g}", *rgb, 1.0)

    ijk_to_ras = vtk.vtkMatrix4x4()
    dose_node.GetIJKToRASMatrix(ijk_to_ras)
    models = []
    for percent, gy, rgb in levels:
        surface = _isosurface(dose_node.GetImageData(), gy, ijk_to_ras)
        if surface.GetNumberOfPoints() == 0:
            continue
        model = scene.AddNewNodeByClass("vtkMRMLModelNode", f"Isodose {percent:g}% ({gy:.3g} Gy)")
        model.SetAndObservePolyData(surface)
        model.SetAttribute(ISODOSE_MODEL_ATTRIBUTE, "1")
        model.SetAttribute(ISODOSE_PERCENT_ATTRIBUTE, f"{percent:g}")
        model.SetAttribute(ISODOSE_GY_ATTRIBUTE, f"{gy:g}")
        model.SetAndObserveTransformNodeID(dose_node.GetTransformNodeID())
        model.CreateDefaultDisplayNodes()
        display = model.GetDisplayNode()
        display.SetColor(*rgb)
        display.SetOpacity(SURFACE_OPACITY)
        display.SetBackfaceCulling(False)
        display.SetVisibility2D(True)
        display.SetSliceIntersectionThickness(LINE_THICKNESS)
        display.SetSliceIntersectionOpacity(1.0)
        sh.SetItemParent(subject_hierarchy_item(model), folder)
        models.append(model)
    return Isodoses(folder, models, table)


def _isosurface(image, gy: float, ijk_to_ras) -> "vtk.vtkPolyData":
    # MRML image data carry no geometry (origin 0, spacing 1): contour in IJK, then map to RAS.
    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, gy)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    if contour.GetOutput().GetNumberOfPoints() == 0:
        return contour.GetOutput()
    smooth = vtk.vtkWindowedSincPolyDataFilter()
    smooth.SetInputConnection(contour.GetOutputPort())
    smooth.SetNumberOfIterations(10)
    smooth.SetPassBand(0.1)
    smooth.NormalizeCoordinatesOn()
    smooth.BoundarySmoothingOff()
    smooth.FeatureEdgeSmoothingOff()
    to_ras = vtk.vtkTransform()
    to_ras.SetMatrix(ijk_to_ras)
    transform = vtk.vtkTransformPolyDataFilter()
    transform.SetInputConnection(smooth.GetOutputPort())
    transform.SetTransform(to_ras)
    normals = vtk.vtkPolyDataNormals()
    normals.SetInputConnection(transform.GetOutputPort())
    normals.SetFeatureAngle(60)
    normals.Update()
    return normals.GetOutput()

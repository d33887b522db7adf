"""Dose volumes as SlicerRT shows them: node attributes, dose units on the study, colours, display.

SlicerRT (DicomRtImportExport, ``vtkSlicerRtCommon``) marks a dose with the node attribute
``DicomRtImport.DoseVolume`` and keeps the unit on the dose's *study* item in subject hierarchy
(``DicomRtImport.DoseUnitName``, ``DicomRtImport.DoseUnitValue``: the grid scaling, 1 for a volume
already in Gy); its Isodose and Dose Volume Histogram modules read them from there. This module
sets the same attributes, so that those modules accept SparseRT doses when SlicerRT is installed,
and needs nothing from SlicerRT itself.
"""

from __future__ import annotations

import slicer

from sparsert.errors import InputError
from sparsert.reports.dose_display import DoseNormalisation, wash_colors

DOSE_VOLUME_ATTRIBUTE = "DicomRtImport.DoseVolume"
DOSE_UNIT_NAME_ATTRIBUTE = "DicomRtImport.DoseUnitName"
DOSE_UNIT_VALUE_ATTRIBUTE = "DicomRtImport.DoseUnitValue"
DOSE_UNIT_NAME = "GY"
# SparseRT's own record of what 100 % means for this dose (isodose levels, thresholds).
NORMALISATION_GY_ATTRIBUTE = "SparseRT.DoseNormalisationGy"
NORMALISATION_SOURCE_ATTRIBUTE = "SparseRT.DoseNormalisationSource"
DOSE_COLOR_TABLE_NAME = "SparseRT_DoseColorTable"
DEFAULT_SUBJECT_NAME = "SparseRT patient"
DEFAULT_STUDY_NAME = "SparseRT plan"


def dose_color_table(scene):
    """The dose wash colour table (jet, 256 colours), created once per scene and saved with it.

    Not SlicerRT's ``Dose_ColorTable``: that one is a singleton SlicerRT recreates and never saves,
    and a saved copy under its name would clash with it when the scene is opened there.
    """
    existing = scene.GetFirstNodeByName(DOSE_COLOR_TABLE_NAME)
    if existing is not None:
        return existing
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", DOSE_COLOR_TABLE_NAME)
    node.SetTypeToUser()
    node.SetAttribute("Category", "SparseRT")
    colors = wash_colors(256)
    node.SetNumberOfColors(len(colors))
    node.GetLookupTable().SetTableRange(0, len(colors) - 1)
    for index, (r, g, b) in enumerate(colors):
        node.SetColor(index, f"{index}", float(r), float(g), float(b), 1.0)
    return node


def mark_as_dose(node, study_item: int, normalisation: DoseNormalisation) -> None:
    """Make a scalar volume a SlicerRT dose volume in Gy under ``study_item``."""
    node.SetAttribute(DOSE_VOLUME_ATTRIBUTE, "1")
    node.SetAttribute(NORMALISATION_GY_ATTRIBUTE, f"{normalisation.gy:g}")
    node.SetAttribute(NORMALISATION_SOURCE_ATTRIBUTE, normalisation.source)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    existing = sh.GetItemAttribute(study_item, DOSE_UNIT_NAME_ATTRIBUTE)
    if existing and existing.upper() != DOSE_UNIT_NAME:
        raise InputError(
            f"study '{sh.GetItemName(study_item)}' holds doses in {existing}; SparseRT doses are in Gy: "
            "put the dose in another study"
        )
    sh.SetItemAttribute(study_item, DOSE_UNIT_NAME_ATTRIBUTE, DOSE_UNIT_NAME)
    sh.SetItemAttribute(study_item, DOSE_UNIT_VALUE_ATTRIBUTE, "1.0")
    sh.SetItemParent(subject_hierarchy_item(node), study_item)


def show_dose_wash(node, color_table, normalisation: DoseNormalisation, window_max_gy: float) -> None:
    """Colour the dose with ``color_table`` over 0..``window_max_gy``, hiding doses below 5 % of 100 %."""
    if not window_max_gy > normalisation.lower_threshold_gy:
        raise InputError(
            f"dose '{node.GetName()}' never reaches {normalisation.lower_threshold_gy:g} Gy "
            f"(5 % of {normalisation.gy:g} Gy): nothing to show"
        )
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(color_table.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, window_max_gy)
    display.AutoThresholdOff()
    display.SetThreshold(normalisation.lower_threshold_gy, window_max_gy)
    display.ApplyThresholdOn()
    display.SetInterpolate(True)


def study_item(scene, anchor_node) -> int:
    """The study that holds ``anchor_node`` (the CT) in subject hierarchy, created when there is none.

    A CT loaded from DICOM already sits under its patient and study; a CT read from a file does
    not, and is moved under a new "SparseRT patient / SparseRT plan" pair.
    """
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = subject_hierarchy_item(anchor_node)
    study = sh.GetItemAncestorAtLevel(item, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
    if study:
        return study
    subject = sh.CreateSubjectItem(sh.GetSceneItemID(), DEFAULT_SUBJECT_NAME)
    study = sh.CreateStudyItem(subject, DEFAULT_STUDY_NAME)
    sh.SetItemParent(item, study)
    return study


def subject_hierarchy_item(node) -> int:
    """The node's subject hierarchy item, added at the top level when it has none.

    The application's subject hierarchy plugins add an item for every new data node; without
    the application nothing does.
    """
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    return sh.GetItemByDataNode(node) or sh.CreateItem(sh.GetSceneItemID(), node)


def show_color_legend(node, title: str):
    """A colour legend (scalar bar) of the node's colours in every view."""
    legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(node)
    legend.SetTitleText(title)
    legend.SetLabelFormat("%.0f")
    legend.SetMaxNumberOfColors(256)
    # Narrower and shorter than the default (0.15 x 0.5 of the view); its text scales with it.
    legend.SetSize(0.1, 0.4)
    legend.SetVisibility(True)
    return legend


"""DVH tables, the DVH chart and the metrics table as MRML nodes, in SlicerRT's conventions.

SlicerRT's Dose Volume Histogram module (``vtkSlicerDoseVolumeHistogramModuleLogic``) stores one
table per structure named ``<segment>_DvhTable`` with the columns ``Dose`` and ``Volume`` (% of the
structure), the attributes ``DoseVolumeHistogram.DVH`` = 1, ``DoseVolumeHistogram.SegmentID`` and
``DoseVolumeHistogram.Volume (cc)``, and references ``doseVolumeRef`` and ``segmentationRef``; its
chart is titled "Dose Volume Histogram" with axes "Dose [GY]" and "Fractional volume [%]", one
line per table in the segment's colour, solid for the first dose and dashed for the second. The
same is done here, with the units also set as column unit labels, and the dose's name in the
table name because two doses share each structure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import slicer
import vtk

from sparsert.reports.metrics_table import METRIC_COLUMNS

DVH_ATTRIBUTE = "DoseVolumeHistogram.DVH"
SEGMENT_ID_ATTRIBUTE = "DoseVolumeHistogram.SegmentID"
VOLUME_CC_ATTRIBUTE = "DoseVolumeHistogram.Volume (cc)"
DOSE_VOLUME_REFERENCE_ROLE = "doseVolumeRef"
SEGMENTATION_REFERENCE_ROLE = "segmentationRef"
CHART_TITLE = "Dose Volume Histogram"
DOSE_AXIS_TITLE = "Dose [Gy]"
VOLUME_AXIS_TITLE = "Fractional volume [%]"
# Metrics table: text columns before the metric columns of sparsert.reports.metrics_table.
TEXT_COLUMNS = (("structure", "Structure"), ("role", "Role"), ("dose", "Dose volume"))
PRESCRIPTION_COLUMN = ("prescription_gy", "Prescription", "Gy")


def add_dvh_table(
    scene, levels: np.ndarray, percent: np.ndarray, dose_node, segmentation_node, segment_name: str, volume_cc: float
):
    """One structure's cumulative DVH (Gy, % of the structure) under one dose."""
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segment_name}_{dose_node.GetName()}_DvhTable")
    table = node.GetTable()
    for name, values in (("Dose", levels), ("Volume", percent)):
        column = vtk.vtkDoubleArray()
        column.SetName(name)
        column.SetNumberOfValues(len(values))
        for index, value in enumerate(values):
            column.SetValue(index, float(value))
        table.AddColumn(column)
    node.SetColumnUnitLabel("Dose", "Gy")
    node.SetColumnUnitLabel("Volume", "%")
    node.SetColumnTitle("Dose", "Dose [Gy]")
    node.SetColumnTitle("Volume", "Volume [%]")
    node.SetAttribute(DVH_ATTRIBUTE, "1")
    node.SetAttribute(SEGMENT_ID_ATTRIBUTE, segment_id)
    node.SetAttribute(VOLUME_CC_ATTRIBUTE, f"{volume_cc:g}")
    node.SetNodeReferenceID(DOSE_VOLUME_REFERENCE_ROLE, dose_node.GetID())
    node.SetNodeReferenceID(SEGMENTATION_REFERENCE_ROLE, segmentation_node.GetID())
    return node


def add_dvh_chart(scene, name: str = CHART_TITLE):
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", name)
    chart.SetTitle(CHART_TITLE)
    chart.SetXAxisTitle(DOSE_AXIS_TITLE)
    chart.SetYAxisTitle(VOLUME_AXIS_TITLE)
    chart.SetLegendVisibility(True)
    chart.SetAttribute(DVH_ATTRIBUTE, "1")
    return chart


def add_dvh_series(scene, chart, table_node, name: str, color: Sequence[float], dashed: bool):
    """A line of ``table_node`` in ``chart``: the segment's colour, solid or dashed."""
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", name)
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName("Dose")
    series.SetYColumnName("Volume")
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
    series.SetLineStyle(
        slicer.vtkMRMLPlotSeriesNode.LineStyleDash if dashed else slicer.vtkMRMLPlotSeriesNode.LineStyleSolid
    )
    series.SetColor(*[float(c) for c in color[:3]])
    series.SetAttribute(DVH_ATTRIBUTE, "1")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    return series


def add_metrics_table(scene, rows: list[dict], name: str):
    """The metrics rows of :func:`sparsert.reports.metrics_table.metrics_rows` as a table node.

    Text columns hold the structure, its role and the dose; numeric columns are doubles with
    their unit as column unit label, NaN where a metric does not apply.
    """
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    for key, title in TEXT_COLUMNS:
        column = vtk.vtkStringArray()
        column.SetName(title)
        for row in rows:
            column.InsertNextValue(str(row[key]))
        table.AddColumn(column)
    numeric = [PRESCRIPTION_COLUMN, *METRIC_COLUMNS]
    for key, title, unit in numeric:
        column = vtk.vtkDoubleArray()
        column.SetName(title)
        for row in rows:
            value = row[key]
            column.InsertNextValue(math.nan if value is None else float(value))
        table.AddColumn(column)
    for key, title, unit in numeric:
        if unit:
            node.SetColumnUnitLabel(title, unit)
    return node

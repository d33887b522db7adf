"""What the views show when the scene is opened: layers of the slice views and the plot layout.

The Slicer application creates the layout node, the view nodes and a slice composite node per
slice view at startup; saved with the scene, they restore the layers and the layout when the scene
is opened. A headless scene has none of them: :func:`use_layout` and :func:`slice_composite_nodes`
create them as the application does (``vtkMRMLLayoutLogic`` for the layout and view nodes, a slice
logic per slice view for its composite node), so that a scene built headless opens the same way.
"""

from __future__ import annotations

from contextlib import contextmanager

import slicer

from sparsert.errors import InputError

SLICE_VIEWS = ("Red", "Yellow", "Green")  # axial, sagittal, coronal in Slicer's default layouts
DOSE_OPACITY = 0.5
SOFT_TISSUE_WINDOW, SOFT_TISSUE_LEVEL = 400.0, 40.0
FOUR_UP_PLOT = slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView


def use_layout(scene, arrangement: int = FOUR_UP_PLOT) -> None:
    """Switch the scene's layout to ``arrangement`` (a ``vtkMRMLLayoutNode`` constant).

    In the application its layout manager creates the views the layout needs; in a headless
    scene a layout logic does the same, then lets go of the scene.
    """
    layout = scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
    if layout is not None:
        layout.SetViewArrangement(arrangement)
        return
    logic = slicer.vtkMRMLLayoutLogic()
    logic.SetMRMLScene(scene)  # adds the layout node and the default view nodes
    logic.GetLayoutNode().SetViewArrangement(arrangement)  # adds the views this layout needs
    logic.SetMRMLScene(None)


def slice_composite_nodes(scene) -> dict[str, object]:
    """The slice composite node of each standard slice view, by view name (created when missing).

    A scene without a layout first gets the four-up plot layout and its views (see :func:`use_layout`).
    """
    if scene.GetFirstNodeByClass("vtkMRMLLayoutNode") is None:
        use_layout(scene)
    composites = {}
    for name in SLICE_VIEWS:
        composite = _composite_node(scene, name)
        if composite is None:
            slice_node = _slice_node(scene, name)
            if slice_node is None:
                raise InputError(f"the scene has no '{name}' slice view; choose a layout that shows it")
            with slice_logic(scene, slice_node) as logic:  # adds the view's composite node
                composite = logic.GetSliceCompositeNode()
        composites[name] = composite
    return composites


def show_dose_over_ct(scene, ct_node, dose_node, opacity: float = DOSE_OPACITY) -> None:
    """CT as background and the dose as foreground at partial opacity in every standard slice view."""
    for composite in slice_composite_nodes(scene).values():
        composite.SetBackgroundVolumeID(ct_node.GetID())
        composite.SetForegroundVolumeID(dose_node.GetID())
        composite.SetForegroundOpacity(opacity)
        composite.SetLabelVolumeID(None)


def center_slice_views(scene, point_ras) -> None:
    """Fit each standard slice view to its volumes and move it through ``point_ras``."""
    for name in SLICE_VIEWS:
        with slice_logic(scene, _slice_node(scene, name)) as logic:
            logic.FitSliceToAll()
            logic.GetSliceNode().JumpSliceByCentering(*[float(c) for c in point_ras])


@contextmanager
def slice_logic(scene, view, app_logic=None):
    """A slice logic for a slice view, for the duration of the block.

    ``view`` is a slice node, or the layout name of a new one. Like the application's slice logics
    it adds the view's composite node and a slice model (model, display and transform nodes);
    the slice model belongs to the application's views, so this one is removed on exit.
    """
    logic = slicer.vtkMRMLSliceLogic()
    if app_logic is not None:
        logic.SetMRMLApplicationLogic(app_logic)
    logic.SetMRMLScene(scene)
    if isinstance(view, str):
        logic.AddSliceNode(view)
    else:
        logic.SetSliceNode(view)
    try:
        yield logic
    finally:
        model = logic.GetSliceModelNode()
        logic.SetMRMLScene(None)
        if model is not None:
            for node in (model.GetDisplayNode(), model.GetParentTransformNode(), model):
                if node is not None:
                    scene.RemoveNode(node)


def use_soft_tissue_window(ct_node) -> None:
    """Soft-tissue window (W 400, L 40 HU) for the CT unless the user set a window."""
    display = ct_node.GetDisplayNode()
    if display is not None and display.GetAutoWindowLevel():
        display.AutoWindowLevelOff()
        display.SetWindowLevel(SOFT_TISSUE_WINDOW, SOFT_TISSUE_LEVEL)


def show_chart(scene, chart) -> None:
    """The four-up plot layout (three slice views and a plot view) with ``chart`` in the plot view."""
    use_layout(scene, FOUR_UP_PLOT)
    scene.GetFirstNodeByClass("vtkMRMLPlotViewNode").SetPlotChartNodeID(chart.GetID())


def _composite_node(scene, layout_name: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == layout_name:
            return node
    return None


def _slice_node(scene, layout_name: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
        if node.GetLayoutName() == layout_name:
            return node
    return None

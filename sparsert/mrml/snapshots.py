"""PNG snapshots of slice views, rendered off screen by Slicer's own slice pipeline.

A slice view without a window: a slice node and its composite node, a ``vtkMRMLSliceLogic`` that
reslices and blends the layers (CT, dose wash), and the slice displayable managers that draw on top
what the application would: segment outlines, isodose lines (model intersections) and the colour
legend. The views are private (their own layout names), set up from the standard views' layers and
removed afterwards, so rendering neither moves the user's views nor leaves nodes in the scene.
Needs an OpenGL context: VTK falls back to EGL when there is no X server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk

from sparsert.errors import InputError
from sparsert.mrml.views import slice_logic

ORIENTATIONS = ("Axial", "Coronal", "Sagittal")
# Displayable managers of a slice view that draw SparseRT's content (the application has more).
SLICE_DISPLAYABLE_MANAGERS = (
    "vtkMRMLSegmentationsDisplayableManager2D",
    "vtkMRMLModelSliceDisplayableManager",
    "vtkMRMLColorLegendDisplayableManager",
)
# Which RAS axis an orientation looks along.
NORMAL_AXIS = {"Axial": 2, "Coronal": 1, "Sagittal": 0}
# Space around the framed points, as a fraction of their extent on each side.
MARGIN = 0.1
# Fraction of a snapshot's width kept free for the colour legend at the right.
LEGEND_WIDTH = 0.2


@dataclass(frozen=True)
class SliceLayers:
    """What a snapshot shows: background and foreground volumes and the foreground's opacity."""

    background_id: str
    foreground_id: str | None = None
    foreground_opacity: float = 0.5


def render_slice_snapshots(
    scene,
    app_logic,
    layers: SliceLayers,
    out_dir: str | Path,
    focus_ras: np.ndarray,
    points_ras: np.ndarray,
    slab_mm: float,
    size: int = 768,
    prefix: str = "",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Axial, coronal and sagittal PNGs through ``focus_ras``, each framing the ``points_ras`` (N x 3)
    that lie within ``slab_mm`` of its plane (all of them when none does), with a margin.

    Returns {orientation: path}; files are ``<prefix><orientation>.png`` (lower case) in ``out_dir``.
    """
    out_dir = Path(out_dir)
    paths = {o: out_dir / f"{prefix}{o.lower()}.png" for o in ORIENTATIONS}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise InputError(f"{', '.join(existing)}: already exist(s) (refusing to overwrite)")
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if not len(points):
        raise InputError("nothing to frame in the snapshots (no points given)")
    focus = np.asarray(focus_ras, dtype=float)
    out_dir.mkdir(parents=True, exist_ok=True)
    for orientation, path in paths.items():
        axis = NORMAL_AXIS[orientation]
        near = points[np.abs(points[:, axis] - focus[axis]) <= slab_mm]
        low, high = (near if len(near) else points).min(axis=0), (near if len(near) else points).max(axis=0)
        center = (low + high) / 2.0
        center[axis] = focus[axis]
        fov = float(np.delete(high - low, axis).max()) * (1.0 + 2.0 * MARGIN) + 2.0 * slab_mm
        _render_view(scene, app_logic, layers, orientation, path, center, fov, size)
    return paths


def _render_view(scene, app_logic, layers, orientation, path, center, fov, size) -> None:
    with slice_logic(scene, f"SparseRTSnapshot{orientation}", app_logic) as logic:
        slice_node, composite = logic.GetSliceNode(), logic.GetSliceCompositeNode()
        # Displayable managers find a view's layers through the application logic's slice logics.
        if app_logic.GetSliceLogics() is None:
            app_logic.SetSliceLogics(vtk.vtkCollection())
        app_logic.GetSliceLogics().AddItem(logic)
        try:
            slice_node.SetOrientation(orientation)
            slice_node.SetDimensions(size, size, 1)
            # The right part of the view is the legend's: widen the view and move the content left by
            # half the legend's width, so it is centred in the rest (the XYZ origin is in millimetres).
            view_fov = fov / (1.0 - LEGEND_WIDTH)
            slice_node.SetFieldOfView(view_fov, view_fov, 1.0)
            slice_node.JumpSliceByCentering(*center)
            slice_node.SetXYZOrigin(view_fov * LEGEND_WIDTH / 2.0, 0.0, 0.0)
            composite.SetBackgroundVolumeID(layers.background_id)
            composite.SetForegroundVolumeID(layers.foreground_id)
            composite.SetForegroundOpacity(layers.foreground_opacity)
            _write_png(_render(app_logic, logic, slice_node, orientation, center, size), path)
        finally:
            app_logic.GetSliceLogics().RemoveItem(logic)
            scene.RemoveNode(composite)
            scene.RemoveNode(slice_node)


def _render(app_logic, logic, slice_node, orientation: str, center: np.ndarray, size: int):
    """The view as an RGB image: the slice logic's blended layers, then what the managers draw on top."""
    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(True)
    window.SetSize(size, size)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    # Some displayable managers observe the interactor; it is never started.
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)

    image = vtk.vtkImageMapper()
    image.SetInputConnection(logic.GetImageDataConnection())
    image.SetColorWindow(255)
    image.SetColorLevel(127.5)
    image_actor = vtk.vtkActor2D()
    image_actor.SetMapper(image)
    renderer.AddViewProp(image_actor)

    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.SetRenderer(renderer)
    for name in SLICE_DISPLAYABLE_MANAGERS:
        manager = getattr(slicer, name)()
        manager.SetMRMLApplicationLogic(app_logic)
        group.AddDisplayableManager(manager)

    label = vtk.vtkTextActor()
    axis = NORMAL_AXIS[orientation]
    label.SetInput(f"{orientation}  {'RAS'[axis]} = {center[axis]:.1f} mm")
    label.GetTextProperty().SetFontSize(max(10, size // 32))
    label.GetTextProperty().SetColor(1.0, 1.0, 1.0)
    label.GetTextProperty().SetBackgroundColor(0.0, 0.0, 0.0)
    label.GetTextProperty().SetBackgroundOpacity(0.6)
    label.GetTextProperty().SetVerticalJustificationToTop()
    label.SetDisplayPosition(size // 64, size - size // 64)
    renderer.AddViewProp(label)

    group.SetMRMLDisplayableNode(slice_node)
    legends = _view_legends(slice_node)
    try:
        # Displayable managers update their pipelines on the first render and request another.
        window.Render()
        window.Render()
        capture = vtk.vtkWindowToImageFilter()
        capture.SetInput(window)
        capture.ReadFrontBufferOff()
        capture.Update()
        output = vtk.vtkImageData()
        output.DeepCopy(capture.GetOutput())
    finally:
        group.SetMRMLDisplayableNode(None)
        for legend in legends:
            slice_node.GetScene().RemoveNode(legend)
        window.Finalize()
    return output


def _view_legends(slice_node) -> list:
    """Copies of the scene's colour legends, shown only in ``slice_node``'s view.

    The colour legend displayable manager makes a legend's actor when the legend node is added
    to the scene, so legends that existed before the view would not be drawn: each gets a
    temporary copy, added now.
    """
    scene = slice_node.GetScene()
    legends = [
        scene.GetNthNodeByClass(index, "vtkMRMLColorLegendDisplayNode")
        for index in range(scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode"))
    ]
    copies = []
    for legend in legends:
        if not legend.GetVisibility() or legend.GetDisplayableNode() is None:
            continue
        copy = slicer.vtkMRMLColorLegendDisplayNode()
        copy.CopyContent(legend)
        copy.SetViewNodeIDs([slice_node.GetID()])
        scene.AddNode(copy)
        legend.GetDisplayableNode().AddAndObserveDisplayNodeID(copy.GetID())
        copy.SetAndObservePrimaryDisplayNode(legend.GetPrimaryDisplayNode())
        copies.append(copy)
    return copies


def _write_png(image, path: Path) -> None:
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    if not path.is_file():
        raise InputError(f"{path}: could not be written")

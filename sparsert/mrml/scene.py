"""An MRML scene with the core logics, for use outside the Slicer application.

In Slicer, ``slicer.mrmlScene`` and the module logics exist already. With the ``slicer-core``
wheel (tests, command line) nothing is set up: :class:`HeadlessSlicer` does what the application
does at startup for the parts SparseRT uses (colours, volumes, segmentations, subject hierarchy).
"""

from __future__ import annotations

import slicer


class HeadlessSlicer:
    """A scene plus the logics that volume and segmentation nodes rely on.

    Keep this object alive as long as the scene is used: it owns the logics, and VTK deletes them
    with their last Python reference.
    """

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetMRMLScene(self.scene)
        # Adds the default colour tables that new display nodes refer to (Grey, GenericAnatomyColors, ...).
        self.color_logic = self._register("Colors", self.app_logic.GetColorLogic())
        # The Colors module (vtkSlicerColorLogic) registers colour legends; its logic wants a home
        # directory for user colour files, so only the node class is registered here.
        self.scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
        self.volumes_logic = self._register("Volumes", slicer.vtkSlicerVolumesLogic())
        self.segmentations_logic = self._register("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic())
        self.subject_hierarchy_logic = self._register("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic())

    def _register(self, name: str, logic):
        logic.SetMRMLApplicationLogic(self.app_logic)
        logic.SetMRMLScene(self.scene)
        self.app_logic.SetModuleLogic(name, logic)
        return logic

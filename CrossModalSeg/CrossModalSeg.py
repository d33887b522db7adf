"""CrossModalSeg: tumour segmentation from a CT and an MR together.

The module is a thin Slicer front end: the work happens in ``CrossModalSegLib.logic`` (Qt-free) and
the ``sparsert`` core package.
"""

from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from CrossModalSegLib.logic import CrossModalSegSceneLogic
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from sparsert.background import TaskMonitor
from sparsert.dependencies import install_in_slicer
from sparsert.errors import InputError, SparseRTError
from sparsert.io.volume import Geometry, Volume
from sparsert.mrml import add_volume_node
from sparsert.models.registry import load_registry


class CrossModalSeg(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Cross-Modal Segmentation")
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["SparseRT developers"]
        self.parent.helpText = _(
            "Segments the tumour from a CT and an MR of the same patient together, with a model trained on "
            "scribbles only. The MR must be registered to the CT (a parent transform is fine). "
            "Research software: nothing it predicts is a clinical contour."
        )
        self.parent.acknowledgementText = _(
            "Developed by the SparseRT developers. Trained and evaluated on the soft-tissue sarcoma CT/MR/PET data "
            "(M. Vallieres et al., Phys. Med. Biol. 60:5471, 2015; TCIA). Built from the 3D Slicer scripted module template."
        )


@parameterNodeWrapper
class CrossModalSegParameterNode:
    """The module's inputs, saved with the scene.

    ctVolume - the CT.
    mrVolume - the MR of the same patient, registered to the CT.
    scribbles - optional tumour and Background scribbles to fine-tune the model on for this case.
    fineTuneSteps - optimiser steps of that fine-tuning.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    mrVolume: vtkMRMLScalarVolumeNode
    scribbles: vtkMRMLSegmentationNode
    fineTuneSteps: Annotated[int, WithinRange(1, 500)] = 30


class CrossModalSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: input selectors bound to the parameter node, an Apply button and a status line."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # observes the parameter node
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._tasks = None  # runs the segmentation off the GUI thread (a sparsert.background.TaskMonitor)
        self._taskTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CrossModalSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged signal to every node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CrossModalSegLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        # The segmentation runs in a worker thread; the timer shows its progress and collects it.
        self._taskTimer = qt.QTimer()
        self._taskTimer.setInterval(200)
        self._taskTimer.connect("timeout()", self._pollTask)
        self._tasks = TaskMonitor(self._showStatus, self._showRunning, timer=self._taskTimer)
        # The registered models of this task (Resources/Models.json).
        self.ui.modelSelector.addItems(sorted(e.name for e in load_registry().values() if e.task == "crossmodal"))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # Stop reacting to parameter changes while the module is not shown.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.onCancelButton()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets carrying the "SlicerParameterName" property in the .ui are bound to the parameters.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None) -> None:
        ready = bool(self._parameterNode and self._parameterNode.ctVolume)
        self.ui.applyButton.enabled = ready and not self._tasks.running
        if not ready:
            self.ui.applyButton.toolTip = _("Select a CT volume (and the MR registered to it).")
        elif self._parameterNode.scribbles:
            self.ui.applyButton.toolTip = _("Fine-tune the model on the scribbles, then segment the tumour.")
        elif self._parameterNode.mrVolume:
            self.ui.applyButton.toolTip = _("Segment the tumour from the CT and MR together.")
        else:
            self.ui.applyButton.toolTip = _("Segment the tumour from the CT alone (less accurate than with the MR).")

    def onApplyButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Tumour segmentation failed."), waitCursor=True):
            install_in_slicer()  # first use: the packages Slicer lacks, after one confirmation
            try:
                parameters = self._parameterNode
                task = self.logic.tumourTask(
                    parameters.ctVolume, parameters.mrVolume, self.ui.modelSelector.currentText or None,
                    scribblesNode=parameters.scribbles, fineTuneSteps=parameters.fineTuneSteps,
                )
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self._tasks.start(task, self._showResult)

    def _showResult(self, result) -> None:
        lines = [_("Tumour segmentation: {name}").format(name=result.segmentationNode.GetName())]
        lines += [_("Warning: {warning}").format(warning=w) for w in result.warnings]
        self.ui.statusLabel.text = "\n".join(lines)

    def onCancelButton(self) -> None:
        self._tasks.cancel()

    def _pollTask(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Tumour segmentation failed."), waitCursor=True):
            self._tasks.poll()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text

    def _showRunning(self, running: bool) -> None:
        self.ui.progressBar.visible = self.ui.cancelButton.visible = running
        self._checkCanApply()


class CrossModalSegLogic(CrossModalSegSceneLogic, ScriptedLoadableModuleLogic):
    """The Qt-free scene logic on Slicer's scene, plus the module's parameter node."""

    def __init__(self) -> None:
        super().__init__(slicer.mrmlScene)

    def getParameterNode(self) -> CrossModalSegParameterNode:
        return CrossModalSegParameterNode(super().getParameterNode())


class CrossModalSegTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest, or the module's Reload and Test button)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_missing_inputs_are_named()
        self.setUp()
        self.test_segments_a_ct_and_mr_into_one_tumour_segment()

    def test_missing_inputs_are_named(self) -> None:
        with self.assertRaisesRegex(InputError, "no CT volume"):
            CrossModalSegLogic().segmentTumour(None, None)

    def test_segments_a_ct_and_mr_into_one_tumour_segment(self) -> None:
        # A bright sphere in soft tissue on both images, the MR on its own grid.
        direction = tuple(np.eye(3).ravel())
        ctGrid = Geometry(shape=(24, 48, 48), spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=direction)
        mrGrid = Geometry(shape=(36, 64, 64), spacing=(1.5, 1.5, 2.0), origin=(2.0, 2.0, 1.0), direction=direction)
        ct = add_volume_node(slicer.mrmlScene, Volume(_sphere(ctGrid, 40.0, 120.0), ctGrid), "CT")
        mr = add_volume_node(slicer.mrmlScene, Volume(_sphere(mrGrid, 1.0, 3.0), mrGrid), "MR")
        result = CrossModalSegLogic().segmentTumour(ct, mr)
        segmentation = result.segmentationNode.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 1)
        self.assertEqual(segmentation.GetNthSegment(0).GetName(), "Tumour")
        self.delayDisplay("CrossModalSeg test passed")


def _sphere(grid: Geometry, background: float, inside: float) -> np.ndarray:
    """Voxels [k, j, i] of ``grid``: ``inside`` within 20 mm of the point (48, 48, 36) mm, else ``background``."""
    k, j, i = np.indices(grid.shape)
    points = np.stack([i, j, k], axis=-1) * np.asarray(grid.spacing) + np.asarray(grid.origin)
    radius = np.linalg.norm(points - np.array([48.0, 48.0, 36.0]), axis=-1)
    return np.where(radius < 20.0, inside, background).astype(np.float32)

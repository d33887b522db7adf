"""InteractiveRefine: automatic gross-tumour segmentation, refined by clicks.

The module is a thin Slicer front end: the work happens in ``InteractiveRefineLib.logic`` (Qt-free)
and the ``sparsert`` core package.
"""

import numpy as np
import slicer
import vtk
from InteractiveRefineLib.logic import InteractiveRefineSceneLogic
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from sparsert.errors import InputError, MissingComponentError, SparseRTError
from sparsert.io.volume import Geometry, Volume
from sparsert.mrml import add_volume_node


class InteractiveRefine(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Interactive Refine")
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["SparseRT developers"]
        self.parent.helpText = _(
            "Segments the gross tumour automatically, then lets you correct the result with clicks: a positive "
            "click inside missed tumour, a negative click on wrongly included tissue; each click can be undone. "
            "Research software: nothing it predicts is a clinical contour."
        )
        self.parent.acknowledgementText = _(
            "Developed by the SparseRT developers. Evaluated on the soft-tissue sarcoma CT/MR/PET data "
            "(M. Vallieres et al., Phys. Med. Biol. 60:5471, 2015; TCIA). Built from the 3D Slicer scripted module template."
        )


@parameterNodeWrapper
class InteractiveRefineParameterNode:
    """The module's inputs, saved with the scene.

    inputVolume - the image to segment the tumour in.
    """

    inputVolume: vtkMRMLScalarVolumeNode


class InteractiveRefineWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: an input selector bound to the parameter node, an Apply button and a status line."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # observes the parameter node
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/InteractiveRefine.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged signal to every node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = InteractiveRefineLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
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

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        # Preselect a volume to save the user a click.
        firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.inputVolume and firstVolume:
            self._parameterNode.inputVolume = firstVolume

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
        ready = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Segment the tumour automatically, ready for refinement by clicks.") if ready else _("Select an input volume.")
        )

    def onApplyButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Tumour segmentation failed."), waitCursor=True):
            try:
                segmentationNode = self.logic.segmentTumour(self._parameterNode.inputVolume)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self.ui.statusLabel.text = _("Tumour segmentation: {name}").format(name=segmentationNode.GetName())


class InteractiveRefineLogic(InteractiveRefineSceneLogic, ScriptedLoadableModuleLogic):
    """The Qt-free scene logic on Slicer's scene, plus the module's parameter node."""

    def __init__(self) -> None:
        super().__init__(slicer.mrmlScene)

    def getParameterNode(self) -> InteractiveRefineParameterNode:
        return InteractiveRefineParameterNode(super().getParameterNode())


class InteractiveRefineTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest, or the module's Reload and Test button)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_missing_input_is_named()
        self.setUp()
        self.test_segmentation_reports_the_missing_model()

    def test_missing_input_is_named(self) -> None:
        with self.assertRaisesRegex(InputError, "no volume selected"):
            InteractiveRefineLogic().segmentTumour(None)

    def test_segmentation_reports_the_missing_model(self) -> None:
        grid = Geometry(shape=(8, 10, 12), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
        volume = add_volume_node(slicer.mrmlScene, Volume(np.zeros(grid.shape, np.float32), grid), "MR")
        with self.assertRaisesRegex(MissingComponentError, "segmentation model"):
            InteractiveRefineLogic().segmentTumour(volume)
        self.delayDisplay("InteractiveRefine test passed")

"""CrossModalSeg: tumour segmentation from a CT and an MR together.

The module is a thin Slicer front end: the work happens in ``CrossModalSegLib.logic`` (Qt-free) and
the ``sparsert`` core package.
"""

import numpy as np
import slicer
import vtk
from CrossModalSegLib.logic import CrossModalSegSceneLogic
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
    """

    ctVolume: vtkMRMLScalarVolumeNode
    mrVolume: vtkMRMLScalarVolumeNode


class CrossModalSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: input selectors bound to the parameter node, an Apply button and a status line."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # observes the parameter node
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

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
        ready = bool(self._parameterNode and self._parameterNode.ctVolume and self._parameterNode.mrVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Segment the tumour from the CT and MR together.") if ready else _("Select a CT volume and an MR volume.")
        )

    def onApplyButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Tumour segmentation failed."), waitCursor=True):
            try:
                segmentationNode = self.logic.segmentTumour(self._parameterNode.ctVolume, self._parameterNode.mrVolume)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self.ui.statusLabel.text = _("Tumour segmentation: {name}").format(name=segmentationNode.GetName())


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
        self.test_segmentation_reports_the_missing_model()

    def test_missing_inputs_are_named(self) -> None:
        with self.assertRaisesRegex(InputError, "no CT volume"):
            CrossModalSegLogic().segmentTumour(None, None)

    def test_segmentation_reports_the_missing_model(self) -> None:
        direction = tuple(np.eye(3).ravel())
        ctGrid = Geometry(shape=(8, 10, 12), spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=direction)
        mrGrid = Geometry(shape=(12, 16, 16), spacing=(1.0, 1.0, 1.5), origin=(4.0, 4.0, 3.0), direction=direction)
        ct = add_volume_node(slicer.mrmlScene, Volume(np.zeros(ctGrid.shape, np.int16), ctGrid), "CT")
        mr = add_volume_node(slicer.mrmlScene, Volume(np.zeros(mrGrid.shape, np.float32), mrGrid), "MR")
        with self.assertRaisesRegex(MissingComponentError, "fusion segmentation model"):
            CrossModalSegLogic().segmentTumour(ct, mr)
        self.delayDisplay("CrossModalSeg test passed")

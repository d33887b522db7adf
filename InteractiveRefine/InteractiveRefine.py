"""InteractiveRefine: automatic gross-tumour segmentation, refined by clicks.

The module is a thin Slicer front end: the work happens in ``InteractiveRefineLib.logic`` (Qt-free)
and the ``sparsert`` core package.
"""

import numpy as np
import qt
import slicer
import vtk
from InteractiveRefineLib.logic import InteractiveRefineSceneLogic
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from sparsert.dependencies import install_in_slicer
from sparsert.errors import InputError, SparseRTError
from sparsert.io.volume import Geometry, Volume
from sparsert.mrml import add_volume_node
from sparsert.models.registry import load_registry


class InteractiveRefine(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Interactive Refine")
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["SparseRT developers"]
        self.parent.helpText = _(
            "Segments the gross tumour automatically (its largest connected part: one mass; a positive click "
            "brings back any other), then lets you correct the result with clicks: a positive "
            "click inside missed tumour, a negative click on wrongly included tissue; each click can be undone. "
            "A positive click only adds tumour and a negative click only removes it, and the 5 mm around each "
            "click always takes the click's label, even where the network would not follow it. "
            "Research software: nothing it predicts is a clinical contour."
        )
        self.parent.acknowledgementText = _(
            "Developed by the SparseRT developers. Evaluated on the soft-tissue sarcoma CT/MR/PET data "
            "(M. Vallieres et al., Phys. Med. Biol. 60:5471, 2015; TCIA). Built from the 3D Slicer scripted module template."
        )


@parameterNodeWrapper
class InteractiveRefineParameterNode:
    """The module's inputs, saved with the scene.

    ctVolume - the CT; the tumour segmentation is made on its grid.
    petVolume - the PET of the same patient, registered to the CT (needed by the shipped PET/CT model).
    resumeSegmentation - a tumour segmentation this module made earlier, to continue refining.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    petVolume: vtkMRMLScalarVolumeNode
    resumeSegmentation: vtkMRMLSegmentationNode


# Colours of the click markers: green adds tumour, red removes tissue.
CLICK_COLORS = {True: (0.2, 0.8, 0.2), False: (0.9, 0.2, 0.2)}


class InteractiveRefineWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs bound to the parameter node, Segment, click placement, Undo/Redo, status line.

    Clicks are control points of two markups nodes (one per sign) made at each segmentation; a
    point placed in a view refines the tumour, Undo removes the last point and takes its click back.
    """

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # observes the parameter node and the click markups
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._clickNodes = {}  # positive (bool) -> markups fiducial node of the running session
        self._undone = []  # (positive, world RAS) of undone clicks, most recent last
        self._replaying = False  # True while Redo re-adds a point (the click is already applied)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/InteractiveRefine.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged signal to every node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setMRMLScene(slicer.mrmlScene)
            # Place mode stays on after each point: several clicks in a row.
            placeWidget.placeMultipleMarkups = slicer.qSlicerMarkupsPlaceWidget.ForcePlaceMultipleMarkups
        self.logic = InteractiveRefineLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.undoButton.connect("clicked(bool)", self.onUndoButton)
        self.ui.redoButton.connect("clicked(bool)", self.onRedoButton)
        self.ui.resumeButton.connect("clicked(bool)", self.onResumeButton)
        self.ui.acceptButton.connect("clicked(bool)", self.onAcceptButton)
        # Ctrl+Z / Ctrl+Y anywhere in Slicer while the module is shown (clicks are placed in the views).
        self._shortcuts = []
        for keys, slot in (("Ctrl+Z", self.onUndoButton), ("Ctrl+Y", self.onRedoButton)):
            shortcut = qt.QShortcut(qt.QKeySequence(keys), slicer.util.mainWindow())
            shortcut.setContext(qt.Qt.ApplicationShortcut)
            shortcut.setEnabled(False)
            shortcut.connect("activated()", slot)
            self._shortcuts.append(shortcut)
        # The registered models of this task (Resources/Models.json).
        self.ui.modelSelector.addItems(sorted(e.name for e in load_registry().values() if e.task == "refinement"))
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        for shortcut in self._shortcuts:
            shortcut.setParent(None)
        self._shortcuts = []

    def enter(self) -> None:
        self.initializeParameterNode()
        self._updateHistoryButtons()

    def exit(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
        # Stop reacting to parameter changes while the module is not shown.
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._stopClicks()
        self.logic.session = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        # Preselect a volume to save the user a click.
        firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.ctVolume and firstVolume:
            self._parameterNode.ctVolume = firstVolume

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
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = (
            _("Segment the tumour automatically, ready for refinement by clicks.") if ready else _("Select a CT volume.")
        )
        self.ui.resumeButton.enabled = bool(self._parameterNode and self._parameterNode.resumeSegmentation)

    def onApplyButton(self) -> None:
        self.ui.statusLabel.text = ""
        volumes = [self._parameterNode.ctVolume] + ([self._parameterNode.petVolume] if self._parameterNode.petVolume else [])
        with slicer.util.tryWithErrorDisplay(_("Tumour segmentation failed."), waitCursor=True):
            install_in_slicer()  # first use: the packages Slicer lacks, after one confirmation
            try:
                result = self.logic.segmentTumour(volumes, self.ui.modelSelector.currentText or None)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self._startClicks()
            self.ui.statusLabel.text = _("Tumour segmentation {name}: {voxels} voxels in {seconds:.1f} s. Click to refine.").format(
                name=self.logic.segmentationNode.GetName(), voxels=result.changed_voxels, seconds=result.seconds
            )

    def onResumeButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Resuming the refinement failed."), waitCursor=True):
            install_in_slicer()  # first use: the packages Slicer lacks, after one confirmation
            try:
                replayed = self.logic.resumeSession(self._parameterNode.resumeSegmentation)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self._startClicks()
            self.ui.statusLabel.text = _("Refining {name} again: {clicks} recorded clicks replayed (their markers are not redrawn).").format(
                name=self.logic.segmentationNode.GetName(), clicks=replayed
            )

    def onAcceptButton(self) -> None:
        node = self.logic.accept()
        self._stopClicks()
        self.ui.statusLabel.text = _("Accepted: {name} is an ordinary segmentation now.").format(name=node.GetName())

    def onClickPlaced(self, node, positive: bool) -> None:
        if self._replaying:
            return
        index = node.GetNumberOfControlPoints() - 1
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(index, ras)
        try:
            with slicer.util.WaitCursor():
                step = self.logic.addClick(ras, positive)
        except SparseRTError as error:
            # The click was not applied: its marker goes too, so the markers always match the clicks.
            node.RemoveNthControlPoint(index)
            self.ui.statusLabel.text = str(error)
            slicer.util.errorDisplay(str(error))
            return
        self._undone.clear()
        self._showStep(_("Click"), step)

    def onUndoButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Undo failed."), waitCursor=True):
            step = self.logic.undo()
            node = self._clickNodes[step.click.positive]
            index = node.GetNumberOfControlPoints() - 1
            ras = None  # no marker: a replayed click of a resumed session, or one the user deleted
            if index >= 0:
                ras = [0.0, 0.0, 0.0]
                node.GetNthControlPointPositionWorld(index, ras)
                node.RemoveNthControlPoint(index)
            self._undone.append((step.click.positive, ras))
            self._showStep(_("Undo"), step)

    def onRedoButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Redo failed."), waitCursor=True):
            step = self.logic.redo()
            positive, ras = self._undone.pop() if self._undone else (step.click.positive, None)
            if ras is not None:
                self._replaying = True
                try:
                    self._clickNodes[positive].AddControlPointWorld(vtk.vtkVector3d(*ras))
                finally:
                    self._replaying = False
            self._showStep(_("Redo"), step)

    def _showStep(self, action: str, step) -> None:
        lines = [_("{action}: {voxels} voxels changed in {seconds:.2f} s.").format(
            action=action, voxels=step.changed_voxels, seconds=step.seconds
        )]
        lines += [_("Warning: {warning}").format(warning=w) for w in step.warnings]
        self.ui.statusLabel.text = "\n".join(lines)
        self._updateHistoryButtons()

    def _startClicks(self) -> None:
        """New click markers for a new session; those of an earlier session stay in the scene, unobserved."""
        self._stopClicks()
        segmentationName = self.logic.segmentationNode.GetName()
        for positive, placeWidget in ((True, self.ui.positivePlaceWidget), (False, self.ui.negativePlaceWidget)):
            name = slicer.mrmlScene.GenerateUniqueName(f"{segmentationName} {'add' if positive else 'remove'} clicks")
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
            node.CreateDefaultDisplayNodes()
            node.GetDisplayNode().SetSelectedColor(*CLICK_COLORS[positive])
            self.addObserver(
                node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                lambda caller, event, positive=positive: self.onClickPlaced(caller, positive),
            )
            placeWidget.setCurrentNode(node)
            placeWidget.enabled = True
            self._clickNodes[positive] = node
        self._updateHistoryButtons()

    def _stopClicks(self) -> None:
        for node in self._clickNodes.values():
            self.removeObserver(node, slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent)
        self._clickNodes = {}
        self._undone = []
        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setPlaceModeEnabled(False)
            placeWidget.enabled = False
        self._updateHistoryButtons()

    def _updateHistoryButtons(self) -> None:
        self.ui.undoButton.enabled = self.logic.canUndo
        self.ui.redoButton.enabled = self.logic.canRedo
        self.ui.acceptButton.enabled = self.logic.session is not None
        shown = self.parent.isEntered
        self._shortcuts[0].setEnabled(shown and self.logic.canUndo)
        self._shortcuts[1].setEnabled(shown and self.logic.canRedo)


class InteractiveRefineLogic(InteractiveRefineSceneLogic, ScriptedLoadableModuleLogic):
    """The Qt-free scene logic on Slicer's scene, plus the module's parameter node."""

    def __init__(self) -> None:
        super().__init__(slicer.mrmlScene)

    def getParameterNode(self) -> InteractiveRefineParameterNode:
        return InteractiveRefineParameterNode(super().getParameterNode())


class InteractiveRefineTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest, or the module's Reload and Test button), with the shipped model."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_missing_input_is_named()
        self.setUp()
        self.test_segments_refines_and_undoes()

    def test_missing_input_is_named(self) -> None:
        with self.assertRaisesRegex(InputError, "no volume selected"):
            InteractiveRefineLogic().segmentTumour(None)

    def test_segments_refines_and_undoes(self) -> None:
        # Soft tissue with a 15 mm sphere, hot on the PET: the shape of the training data.
        grid = Geometry(shape=(32, 64, 64), spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
        k, j, i = np.indices(grid.shape)
        inside = (((i - 32) * 2.0) ** 2 + ((j - 32) * 2.0) ** 2 + ((k - 16) * 3.0) ** 2) < 15.0**2
        ct = add_volume_node(slicer.mrmlScene, Volume(np.where(inside, 60.0, 30.0).astype(np.float32), grid), "CT")
        pet = add_volume_node(slicer.mrmlScene, Volume(np.where(inside, 8.0, 1.0).astype(np.float32), grid), "PET")
        logic = InteractiveRefineLogic()
        logic.segmentTumour([ct, pet])
        tumourId = logic.segmentationNode.GetSegmentation().GetSegmentIdBySegmentName("Tumour")
        before = slicer.util.arrayFromSegmentBinaryLabelmap(logic.segmentationNode, tumourId, ct).copy()
        centre = grid.ijk_to_ras() @ np.array([32.0, 32.0, 16.0, 1.0])
        logic.addClick(centre[:3], positive=True)
        self.assertTrue(logic.canUndo)
        logic.undo()
        after = slicer.util.arrayFromSegmentBinaryLabelmap(logic.segmentationNode, tumourId, ct)
        self.assertTrue(np.array_equal(before, after))
        self.delayDisplay("InteractiveRefine test passed")

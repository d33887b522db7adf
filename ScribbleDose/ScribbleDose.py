"""ScribbleDose: a predicted 3D dose from a few scribbles on a planning CT.

The module is a thin Slicer front end: the work happens in ``ScribbleDoseLib.logic`` (Qt-free) and
the ``sparsert`` core package.
"""

from pathlib import Path

import numpy as np
import qt
import slicer
import vtk
from ScribbleDoseLib.logic import ScribbleDoseSceneLogic
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
from sparsert.background import TaskMonitor
from sparsert.errors import InputError, MissingComponentError, SparseRTError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.mrml import add_segmentation_node, add_volume_node
from sparsert.roles import ORGAN_SYNONYMS, ROLES, role_from_fields


class ScribbleDose(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Scribble Dose")
        self.parent.categories = ["Radiotherapy"]
        self.parent.dependencies = []
        self.parent.contributors = ["SparseRT developers"]
        self.parent.helpText = _(
            "Draw a few strokes inside each structure (targets and organs at risk) on a planning CT; "
            "ScribbleDose completes them into dense structures and predicts the 3D dose they imply, "
            "shown as a dose overlay with isodose lines, dose-volume histograms and plan metrics. "
            "Research software: nothing it predicts is a clinical plan."
        )
        self.parent.acknowledgementText = _(
            "Developed by the SparseRT developers. Trained and evaluated on the OpenKBP Grand Challenge data "
            "(A. Babier et al., Medical Physics 48:5549-5561, 2021). Built from the 3D Slicer scripted module template."
        )
        # The bundled sample case in the Sample Data module, once Slicer has started.
        slicer.app.connect("startupCompleted()", registerSampleData)


# The sample case's files (in Resources/SampleData/OpenKBP-pt_201): file, Slicer file type, node name.
SAMPLE_FILES = (
    ("ct.nrrd", "VolumeFile", "pt_201 CT"),
    ("scribbles.seg.nrrd", "SegmentationFile", "pt_201 scribbles"),
    ("structures.seg.nrrd", "SegmentationFile", "pt_201 structures"),
    ("dose.nrrd", "VolumeFile", "pt_201 reference dose"),
)


def registerSampleData() -> None:
    """Offer the bundled OpenKBP case (CT, scribbles, structures, reference dose) in Sample Data.

    The files ship with the extension, so the "download" reads them from disk (file:// URIs).
    """
    import SampleData

    from sparsert.resources import sample_data_dir

    folder = sample_data_dir() / "OpenKBP-pt_201"
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="SparseRT",
        sampleName="OpenKBP-pt_201",
        uris=[(folder / name).as_uri() for name, _, _ in SAMPLE_FILES],
        fileNames=[name for name, _, _ in SAMPLE_FILES],
        nodeNames=[node for _, _, node in SAMPLE_FILES],
        thumbnailFileName=str(Path(__file__).resolve().parent / "Resources" / "Icons" / "ScribbleDose.png"),
        loadFileType=[kind for _, kind, _ in SAMPLE_FILES],
    )


@parameterNodeWrapper
class ScribbleDoseParameterNode:
    """The module's inputs, saved with the scene.

    ctVolume - the planning CT.
    scribbles - a few strokes per structure, one segment per structure (plus Background).
    structures - dense structures the dose is predicted from: the completed scribbles, or drawn ones.
    """

    ctVolume: vtkMRMLScalarVolumeNode
    scribbles: vtkMRMLSegmentationNode
    structures: vtkMRMLSegmentationNode


class ScribbleDoseWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The module panel: inputs bound to the parameter node, Complete, a structure roles table,
    Predict dose, progress with Cancel, and a status line. Both steps run off the GUI thread."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # observes the parameter node
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._tasks = None  # runs Complete and Predict dose off the GUI thread (a sparsert.background.TaskMonitor)
        self._taskTimer = None
        self._rolesNode = None  # the structures node the roles table shows

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ScribbleDose.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        # The .ui connects the top-level widget's mrmlSceneChanged signal to every node selector.
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ScribbleDoseLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.completeButton.connect("clicked(bool)", self.onCompleteButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.rolesTable.horizontalHeader().setStretchLastSection(True)
        # Steps run in a worker thread; the timer shows their progress and collects them.
        self._taskTimer = qt.QTimer()
        self._taskTimer.setInterval(200)
        self._taskTimer.connect("timeout()", self._pollTask)
        self._tasks = TaskMonitor(self._showStatus, self._showRunning, timer=self._taskTimer)
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
        parameters = self._parameterNode
        idle = not self._tasks.running
        canComplete = bool(parameters and parameters.ctVolume and parameters.scribbles)
        canPredict = bool(parameters and parameters.ctVolume and parameters.structures)
        self.ui.completeButton.enabled = canComplete and idle
        self.ui.applyButton.enabled = canPredict and idle
        self.ui.applyButton.toolTip = (
            _("Predict the dose from the structures with the roles in the table.")
            if canPredict
            else _("Select a CT volume and structures (press Complete to make them from scribbles).")
        )
        structures = parameters.structures if parameters else None
        if structures is not self._rolesNode:
            self._showRoles(structures)

    def onCompleteButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Completion failed."), waitCursor=True):
            install_in_slicer()  # first use: the packages Slicer lacks, after one confirmation
            try:
                task = self.logic.completeTask(self._parameterNode.ctVolume, self._parameterNode.scribbles)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self._tasks.start(task, self._completed)

    def _completed(self, result) -> None:
        self._parameterNode.structures = result.structuresNode
        lines = [_("Completed structures '{name}': check the roles, then predict the dose.").format(
            name=result.structuresNode.GetName()
        )]
        self.ui.statusLabel.text = "\n".join(lines + list(result.warnings))

    def onApplyButton(self) -> None:
        self.ui.statusLabel.text = ""
        with slicer.util.tryWithErrorDisplay(_("Dose prediction failed."), waitCursor=True):
            install_in_slicer()  # first use: the packages Slicer lacks, after one confirmation
            ctNode, structuresNode = self._parameterNode.ctVolume, self._parameterNode.structures
            try:
                # Read once: the DVH metrics use the roles the prediction used, whatever is edited meanwhile.
                roles = self._tableRoles()
                task = self.logic.doseTask(ctNode, structuresNode, roles)
            except SparseRTError as error:
                self.ui.statusLabel.text = str(error)
                raise
            self._tasks.start(task, lambda doseNode: self._showPrediction(ctNode, structuresNode, doseNode, roles))

    def _showPrediction(self, ctNode, structuresNode, doseNode, roles) -> None:
        doseScene = self.logic.showDose(ctNode, structuresNode, doseNode, roles=roles)
        self.ui.statusLabel.text = _("Predicted dose '{dose}' from structures '{structures}'; 100 % = {gy:g} Gy ({source}).").format(
            dose=doseNode.GetName(),
            structures=structuresNode.GetName(),
            gy=doseScene.normalisation.gy,
            source=doseScene.normalisation.source,
        )

    # Background steps ------------------------------------------------------------------------

    def onCancelButton(self) -> None:
        self._tasks.cancel()

    def _pollTask(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("ScribbleDose failed."), waitCursor=True):
            self._tasks.poll()

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text

    def _showRunning(self, running: bool) -> None:
        self.ui.progressBar.visible = self.ui.cancelButton.visible = running
        self._checkCanApply()

    # Roles table -----------------------------------------------------------------------------

    def _showRoles(self, structuresNode) -> None:
        """One row per structure: name, role, prescription and organ, as guessed from the name."""
        self._rolesNode = structuresNode
        table = self.ui.rolesTable
        table.setRowCount(0)
        if structuresNode is None:
            return
        for row, (name, role) in enumerate(self.logic.structureRoles(structuresNode).items()):
            table.insertRow(row)
            nameItem = qt.QTableWidgetItem(name)
            nameItem.setFlags(nameItem.flags() & ~qt.Qt.ItemIsEditable)
            table.setItem(row, 0, nameItem)
            roleBox = qt.QComboBox()
            roleBox.addItems(list(ROLES))
            roleBox.currentText = role.role
            table.setCellWidget(row, 1, roleBox)
            table.setItem(row, 2, qt.QTableWidgetItem(f"{role.prescription_gy:g}" if role.prescription_gy else ""))
            organBox = qt.QComboBox()
            organBox.addItems(["", *ORGAN_SYNONYMS])
            organBox.currentText = role.organ or ""
            table.setCellWidget(row, 3, organBox)

    def _tableRoles(self) -> dict:
        """{structure: StructureRole} as the table reads now (InputError for a malformed row)."""
        table = self.ui.rolesTable
        return {
            table.item(row, 0).text(): role_from_fields(
                table.item(row, 0).text(), table.cellWidget(row, 1).currentText,
                table.item(row, 2).text() if table.item(row, 2) else "", table.cellWidget(row, 3).currentText,
            )
            for row in range(table.rowCount)
        }


class ScribbleDoseLogic(ScribbleDoseSceneLogic, ScriptedLoadableModuleLogic):
    """The Qt-free scene logic on Slicer's scene, plus the module's parameter node."""

    def __init__(self) -> None:
        super().__init__(slicer.mrmlScene, slicer.app.applicationLogic())

    def getParameterNode(self) -> ScribbleDoseParameterNode:
        return ScribbleDoseParameterNode(super().getParameterNode())


class ScribbleDoseTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer (ctest, or the module's Reload and Test button)."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_missing_inputs_are_named()
        self.setUp()
        self.test_missing_dose_model_is_named()

    def _ctAndScribbles(self, stroked: bool):
        grid = Geometry(shape=(8, 10, 12), spacing=(2.0, 2.0, 3.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
        ct = add_volume_node(slicer.mrmlScene, Volume(np.full(grid.shape, -1000, np.int16), grid), "CT")
        stroke = np.zeros(grid.shape, bool)
        stroke[4, 3:7, 5] = stroked
        scribbles = Segmentation(grid)
        scribbles.add("PTV70", stroke)
        return ct, add_segmentation_node(slicer.mrmlScene, scribbles, "Scribbles", ct)

    def test_missing_inputs_are_named(self) -> None:
        logic = ScribbleDoseLogic()
        with self.assertRaisesRegex(InputError, "no CT volume"):
            logic.predictDose(None, None)
        ct, blank = self._ctAndScribbles(stroked=False)
        with self.assertRaisesRegex(InputError, "no scribble segmentation"):
            logic.predictDose(ct, None)
        with self.assertRaisesRegex(InputError, "'Scribbles' has no scribble on CT 'CT'"):
            logic.predictDose(ct, blank)

    def test_missing_dose_model_is_named(self) -> None:
        ct, scribbles = self._ctAndScribbles(stroked=True)
        with self.assertRaisesRegex(MissingComponentError, "^no model named 'no-such-model'"):
            ScribbleDoseLogic().predictDose(ct, scribbles, doseModel="no-such-model")
        # A failed prediction adds nothing to the scene.
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"), 1)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), 1)
        self.delayDisplay("ScribbleDose test passed")

"""ScribbleDose's processing on MRML nodes.

Qt-free on purpose: ``ScribbleDose.py`` (which needs Qt) adds only the parameter node on top of
:class:`ScribbleDoseSceneLogic`, and the test suite runs this class under the slicer-core wheel.
The dose scene itself (dose display, isodoses, DVH, metrics, scene bundle, snapshots) is built by
:mod:`sparsert.mrml.dose_scene`, which ``sparsert scene`` uses too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sparsert.background import BackgroundTask
from sparsert.errors import InputError
from sparsert.mrml import add_segmentation_node, add_volume_node, segmentation_from_node, volume_from_node
from sparsert.roles import structure_roles

if TYPE_CHECKING:
    from sparsert.mrml.dose_scene import DoseScene

# The dose scene's modules (slicerio, matplotlib) are imported where used: the module must load in
# a Slicer whose Python lacks them yet, so that sparsert.dependencies can offer to install them.

# On a structures node made by completeTask: the scribble node's name. The dose of such structures
# comes from the model trained on completions (dose-scribble), of any other from dose-mask.
COMPLETED_FROM_ATTRIBUTE = "SparseRT.CompletedFrom"


@dataclass
class CompletionResult:
    """The structures node :meth:`ScribbleDoseSceneLogic.completeTask` added, and what the completion warned about."""

    structuresNode: object
    warnings: list[str] = field(default_factory=list)


@dataclass
class DosePrediction:
    """The nodes :meth:`ScribbleDoseSceneLogic.predictDose` added, and what the completion warned about."""

    structuresNode: object
    doseNode: object
    warnings: list[str] = field(default_factory=list)


class ScribbleDoseSceneLogic:
    """Scribbles on a planning CT -> dense structures -> predicted dose, with results added to ``scene``.

    Each step is a :class:`~sparsert.background.BackgroundTask` (the module runs it off the GUI
    thread; scripts call its ``run()``): :meth:`completeTask` (scribbles -> a new structures node),
    :meth:`doseTask` (structures, completed or drawn, with their roles -> a new dose node).
    :meth:`predictDose` chains both in the calling thread. A step that fails or is cancelled adds
    nothing. ``appLogic`` (Slicer's application logic) is needed only to render snapshots.
    """

    def __init__(self, scene, appLogic=None) -> None:
        super().__init__()  # cooperative: ScribbleDoseLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene
        self.appLogic = appLogic

    def predictDose(
        self, ctNode, scribblesNode, completionMethod="scm", doseModel=None, device="cpu"
    ) -> DosePrediction:
        """Complete the scribbles into structures (roles guessed from their names) and predict the
        dose (Gy) on the CT grid, in the calling thread."""
        completion = self.completeTask(ctNode, scribblesNode, completionMethod, device)
        from sparsert.dose.predict import default_model, load_dose_model

        doseModel = doseModel or default_model("scribble")
        load_dose_model(doseModel, device)  # missing weights are reported before the completion runs
        completed = completion.run()
        doseNode = self.doseTask(ctNode, completed.structuresNode, None, doseModel, device).run()
        return DosePrediction(completed.structuresNode, doseNode, completed.warnings)

    def completeTask(self, ctNode, scribblesNode, method="scm", device="cpu"):
        """A task completing the scribbles into dense structures; its result, a :class:`CompletionResult`,
        adds ``<scribbles>_structures`` (the scribble node is left as drawn).

        ``method`` is a name of :data:`sparsert.completion.METHODS`. Raises :class:`InputError` when an
        input is missing or has no scribble (here, or from the result), :class:`MissingComponentError`
        when the completion model's weights are missing.
        """
        if ctNode is None:
            raise InputError("no CT volume selected")
        if scribblesNode is None:
            raise InputError("no scribble segmentation selected")
        ct = volume_from_node(ctNode)
        scribbles = segmentation_from_node(scribblesNode, ct.geometry)
        if not any(segment.mask.any() for segment in scribbles.segments):
            raise InputError(
                f"segmentation '{scribblesNode.GetName()}' has no scribble on CT '{ctNode.GetName()}': "
                "draw a few strokes in each structure first"
            )
        # Imported here, not at the top: Slicer imports every scripted module at startup, and this loads PyTorch.
        from sparsert.completion import completer

        complete = completer(method, device=device)  # an unknown method is reported now, not from the thread

        def work(progress):
            progress.report("Completing the scribbles into structures")
            return complete(ct, scribbles)

        def finish(structures) -> CompletionResult:
            name = self.scene.GenerateUniqueName(f"{scribblesNode.GetName()}_structures")
            node = add_segmentation_node(self.scene, structures, name, ctNode)
            node.SetAttribute(COMPLETED_FROM_ATTRIBUTE, scribblesNode.GetName())
            return CompletionResult(node, list(structures.warnings))

        return BackgroundTask(work, finish)

    def structureRoles(self, structuresNode, roles=None) -> dict:
        """{segment name: StructureRole} of the node's segments: guessed from the names, then ``roles``."""
        if structuresNode is None:
            raise InputError("no structures selected")
        segmentation = structuresNode.GetSegmentation()
        names = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
        return structure_roles(names, roles)

    def doseTask(self, ctNode, structuresNode, roles=None, doseModel=None, device="cpu"):
        """A task predicting the dose (Gy) on the CT grid from dense structures; its result is the new
        dose node ``<CT>_PredictedDose``, which :meth:`showDose` makes a SlicerRT dose and shows.

        ``roles`` ({segment name: StructureRole}) override the roles guessed from the names (a
        ``background`` role leaves a segment out); ``doseModel`` is a registered dose model or a
        checkpoint file, by default ``dose-scribble`` for structures :meth:`completeTask` made and
        ``dose-mask`` for any other. Raises :class:`InputError` for missing inputs or roles the model cannot use
        (no target, a target without prescription, an organ it does not know), and
        :class:`MissingComponentError` when the model's weights are missing.
        """
        if ctNode is None:
            raise InputError("no CT volume selected")
        if structuresNode is None:
            raise InputError("no structures selected: complete the scribbles or choose a segmentation")
        ct = volume_from_node(ctNode)
        structures = segmentation_from_node(structuresNode, ct.geometry)
        from sparsert.dose.inputs import checked_roles

        resolved = checked_roles(structures.names, roles)
        completed = structuresNode.GetAttribute(COMPLETED_FROM_ATTRIBUTE) is not None

        def work(progress):
            # Imported here, not at the top: Slicer imports every scripted module at startup, and this loads PyTorch.
            from sparsert.dose.predict import default_model, load_dose_model, predict_dose

            progress.report("Loading the dose model")
            model = load_dose_model(doseModel or default_model("scribble" if completed else "mask"), device)
            progress.report("Predicting the dose")
            return predict_dose(model, ct, structures, roles=resolved)

        def finish(dose):
            return add_volume_node(self.scene, dose, self.scene.GenerateUniqueName(f"{ctNode.GetName()}_PredictedDose"))

        return BackgroundTask(work, finish)

    def loadCase(self, ctPath, structuresPath, dosePath, referenceDosePath=None) -> dict:
        """Read CT, structures and dose files into the scene: {"ct", "structures", "dose", "reference"} nodes."""
        from sparsert.mrml.dose_scene import load_case

        return load_case(self.scene, ctPath, structuresPath, dosePath, referenceDosePath)

    def showDose(self, ctNode, structuresNode, doseNode, referenceDoseNode=None, roles=None) -> DoseScene:
        """Show ``doseNode`` over the CT with isodose lines, DVHs (reference dashed) and plan metrics.

        ``roles`` ({name: StructureRole}) default to the roles guessed from the segment names.
        """
        from sparsert.mrml.dose_scene import build_dose_scene

        return build_dose_scene(self.scene, ctNode, structuresNode, doseNode, referenceDoseNode, roles)

    def saveDoseScene(self, doseScene: DoseScene, scenePath, snapshotsDir=None, overwrite: bool = False) -> dict:
        """Write the scene bundle (.mrb) and, with ``snapshotsDir``, slice snapshots and a DVH figure."""
        if snapshotsDir is not None and self.appLogic is None:
            raise InputError("snapshots need the application logic: create the logic with appLogic")
        from sparsert.mrml.dose_scene import save_dose_scene

        return save_dose_scene(self.scene, self.appLogic, doseScene, scenePath, snapshotsDir, overwrite)

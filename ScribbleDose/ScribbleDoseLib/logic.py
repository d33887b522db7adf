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

if TYPE_CHECKING:
    from sparsert.mrml.dose_scene import DoseScene

# The dose scene's modules (slicerio, matplotlib) are imported where used: the module must load in
# a Slicer whose Python lacks them yet, so that sparsert.dependencies can offer to install them.


@dataclass
class DosePrediction:
    """The nodes :meth:`ScribbleDoseSceneLogic.predictDose` added, and what the completion warned about."""

    structuresNode: object
    doseNode: object
    warnings: list[str] = field(default_factory=list)


class ScribbleDoseSceneLogic:
    """Scribbles on a planning CT -> dense structures -> predicted dose, with results added to ``scene``.

    ``appLogic`` (Slicer's application logic) is needed only to render snapshots.
    """

    def __init__(self, scene, appLogic=None) -> None:
        super().__init__()  # cooperative: ScribbleDoseLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene
        self.appLogic = appLogic

    def predictDose(
        self, ctNode, scribblesNode, completionMethod="scm", doseModel="dose-mask", device="cpu"
    ) -> DosePrediction:
        """Complete the scribbles into structures and predict the dose (Gy) on the CT grid, in the
        calling thread; :meth:`doseTask` does the same off the GUI thread."""
        return self.doseTask(ctNode, scribblesNode, completionMethod, doseModel, device).run()

    def doseTask(self, ctNode, scribblesNode, completionMethod="scm", doseModel="dose-mask", device="cpu"):
        """A :class:`~sparsert.background.BackgroundTask` completing the scribbles and predicting the
        dose; its result is a :class:`DosePrediction`.

        The result adds two nodes: the structures, ``<scribbles>_structures`` (the scribble node is
        left as drawn), and the dose, ``<CT>_PredictedDose``; :meth:`showDose` makes the latter a
        SlicerRT dose and shows it. ``completionMethod`` is a name of
        :data:`sparsert.completion.METHODS`, ``doseModel`` a registered dose model or a checkpoint file.

        Raises :class:`InputError` when an input is missing or unusable (here, or from the task's
        result), and :class:`MissingComponentError` when a model's weights are missing; nothing is
        added then, nor when the task is cancelled.
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

        def work(progress):
            # Imported here, not at the top: Slicer imports every scripted module at startup, and these load PyTorch.
            from sparsert.completion import completer
            from sparsert.dose.predict import load_dose_model, predict_dose

            progress.report("Loading the models")
            complete = completer(completionMethod, device=device)
            # The dose model before the completion, so that missing weights are reported without waiting for it.
            model = load_dose_model(doseModel, device)
            progress.report("Completing the scribbles into structures")
            structures = complete(ct, scribbles)
            progress.report("Predicting the dose")
            return structures, predict_dose(model, ct, structures)

        def finish(output) -> DosePrediction:
            structures, dose = output
            structuresNode = add_segmentation_node(
                self.scene, structures, self.scene.GenerateUniqueName(f"{scribblesNode.GetName()}_structures"), ctNode
            )
            doseNode = add_volume_node(self.scene, dose, self.scene.GenerateUniqueName(f"{ctNode.GetName()}_PredictedDose"))
            return DosePrediction(structuresNode, doseNode, list(structures.warnings))

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

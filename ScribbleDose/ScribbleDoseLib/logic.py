"""ScribbleDose's processing on MRML nodes.

Qt-free on purpose: ``ScribbleDose.py`` (which needs Qt) adds only the parameter node on top of
:class:`ScribbleDoseSceneLogic`, and the test suite runs this class under the slicer-core wheel.
The dose scene itself (dose display, isodoses, DVH, metrics, scene bundle, snapshots) is built by
:mod:`sparsert.mrml.dose_scene`, which ``sparsert scene`` uses too.
"""

from __future__ import annotations

from sparsert.errors import InputError, MissingComponentError
from sparsert.mrml import segmentation_from_node, volume_node_geometry
from sparsert.mrml.dose_scene import DoseScene, build_dose_scene, load_case, save_dose_scene


class ScribbleDoseSceneLogic:
    """Scribbles on a planning CT -> dense structures -> predicted dose, with results added to ``scene``.

    ``appLogic`` (Slicer's application logic) is needed only to render snapshots.
    """

    def __init__(self, scene, appLogic=None) -> None:
        super().__init__()  # cooperative: ScribbleDoseLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene
        self.appLogic = appLogic

    def predictDose(self, ctNode, scribblesNode):
        """Complete the scribbles into structures and predict the dose volume (Gy) on the CT grid.

        Raises :class:`InputError` when an input is missing or holds no scribble, and
        :class:`MissingComponentError` while the dose model this needs does not exist.
        """
        if ctNode is None:
            raise InputError("no CT volume selected")
        if scribblesNode is None:
            raise InputError("no scribble segmentation selected")
        grid = volume_node_geometry(ctNode)
        scribbles = segmentation_from_node(scribblesNode, grid)
        drawn = [segment.name for segment in scribbles.segments if segment.mask.any()]
        if not drawn:
            raise InputError(
                f"segmentation '{scribblesNode.GetName()}' has no scribble on CT '{ctNode.GetName()}': "
                "draw a few strokes in each structure first"
            )
        raise MissingComponentError(
            "ScribbleDose cannot predict a dose yet: no trained dose-prediction model is available and scribble "
            f"completion is not wired into the module (scribbles found for: {', '.join(drawn)})"
        )

    def loadCase(self, ctPath, structuresPath, dosePath, referenceDosePath=None) -> dict:
        """Read CT, structures and dose files into the scene: {"ct", "structures", "dose", "reference"} nodes."""
        return load_case(self.scene, ctPath, structuresPath, dosePath, referenceDosePath)

    def showDose(self, ctNode, structuresNode, doseNode, referenceDoseNode=None, roles=None) -> DoseScene:
        """Show ``doseNode`` over the CT with isodose lines, DVHs (reference dashed) and plan metrics.

        ``roles`` ({name: StructureRole}) default to the roles guessed from the segment names.
        """
        return build_dose_scene(self.scene, ctNode, structuresNode, doseNode, referenceDoseNode, roles)

    def saveDoseScene(self, doseScene: DoseScene, scenePath, snapshotsDir=None, overwrite: bool = False) -> dict:
        """Write the scene bundle (.mrb) and, with ``snapshotsDir``, slice snapshots and a DVH figure."""
        if snapshotsDir is not None and self.appLogic is None:
            raise InputError("snapshots need the application logic: create the logic with appLogic")
        return save_dose_scene(self.scene, self.appLogic, doseScene, scenePath, snapshotsDir, overwrite)

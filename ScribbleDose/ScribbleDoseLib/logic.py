"""ScribbleDose's processing on MRML nodes.

Qt-free on purpose: ``ScribbleDose.py`` (which needs Qt) adds only the parameter node on top of
:class:`ScribbleDoseSceneLogic`, and the test suite runs this class under the slicer-core wheel.
"""

from __future__ import annotations

from sparsert.errors import InputError, MissingComponentError
from sparsert.mrml import segmentation_from_node, volume_node_geometry


class ScribbleDoseSceneLogic:
    """Scribbles on a planning CT -> dense structures -> predicted dose, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: ScribbleDoseLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene

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

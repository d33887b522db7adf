"""InteractiveRefine's processing on MRML nodes.

Qt-free on purpose: ``InteractiveRefine.py`` (which needs Qt) adds only the parameter node on top
of :class:`InteractiveRefineSceneLogic`, and the test suite runs this class under the slicer-core wheel.
"""

from __future__ import annotations

from sparsert.errors import MissingComponentError
from sparsert.mrml import volume_node_geometry


class InteractiveRefineSceneLogic:
    """Automatic gross-tumour segmentation refined by clicks, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: InteractiveRefineLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene

    def segmentTumour(self, volumeNode):
        """Segment the gross tumour in ``volumeNode`` automatically; returns a segmentation node.

        Raises :class:`InputError` when the volume is missing or empty, and
        :class:`MissingComponentError` while the segmentation model this needs does not exist.
        """
        volume_node_geometry(volumeNode)
        raise MissingComponentError(
            f"InteractiveRefine cannot segment '{volumeNode.GetName()}' yet: no trained automatic tumour "
            "segmentation model is available, so there is no result to refine with clicks"
        )

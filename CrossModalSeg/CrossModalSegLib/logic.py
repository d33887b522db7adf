"""CrossModalSeg's processing on MRML nodes.

Qt-free on purpose: ``CrossModalSeg.py`` (which needs Qt) adds only the parameter node on top of
:class:`CrossModalSegSceneLogic`, and the test suite runs this class under the slicer-core wheel.
"""

from __future__ import annotations

from sparsert.errors import InputError, MissingComponentError
from sparsert.mrml import volume_node_geometry


class CrossModalSegSceneLogic:
    """Tumour segmentation from a CT and an MR of the same patient, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: CrossModalSegLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene

    def segmentTumour(self, ctNode, mrNode):
        """Segment the tumour from both images; returns a segmentation node on the CT grid.

        The MR must already be registered to the CT (parent transforms count). Raises
        :class:`InputError` when an input is missing or the two do not overlap in physical space,
        and :class:`MissingComponentError` while the fusion model this needs does not exist.
        """
        if ctNode is None or mrNode is None:
            raise InputError(f"no {'CT' if ctNode is None else 'MR'} volume selected")
        ct = volume_node_geometry(ctNode)
        mr = volume_node_geometry(mrNode)
        if not ct.overlaps(mr):
            raise InputError(
                f"CT '{ctNode.GetName()}' ({ct.describe()}) and MR '{mrNode.GetName()}' ({mr.describe()}) do not "
                "overlap in physical space: register the MR to the CT first"
            )
        raise MissingComponentError(
            "CrossModalSeg cannot segment yet: no trained CT+MR fusion segmentation model is available"
        )

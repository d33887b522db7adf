"""InteractiveRefine's processing on MRML nodes.

Qt-free on purpose: ``InteractiveRefine.py`` (which needs Qt) adds only the parameter node and the
click placement on top of :class:`InteractiveRefineSceneLogic`, and the test suite runs this class
under the slicer-core wheel.

One refinement session at a time: :meth:`~InteractiveRefineSceneLogic.segmentTumour` starts it
(automatic result in a new segmentation node), each click, undo and redo updates that node in place.
"""

from __future__ import annotations

from sparsert.errors import InputError
from sparsert.mrml import add_segmentation_node, update_segmentation_node, volume_from_node, volume_node_geometry


class InteractiveRefineSceneLogic:
    """Automatic gross-tumour segmentation refined by clicks, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: InteractiveRefineLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene
        self.session = None
        self.segmentationNode = None
        self._referenceNode = None

    def segmentTumour(self, volumeNodes, model=None, device="cpu"):
        """Segment the gross tumour automatically and start a refinement session; returns the new
        segmentation node (``<first volume>_Tumour``, on the first volume's grid).

        ``volumeNodes``: one volume node or a list, in the model's modality order (CT then PET for
        the shipped model); the first defines the output grid, the others are resampled onto it
        through physical space. ``model``: registered refinement model(s) or model file(s) (a list
        averages an ensemble; default: the shipped one). Raises :class:`InputError` for a missing,
        empty or non-co-registered volume and :class:`MissingComponentError` when weights are
        missing; a running session and its node are kept as they were then.
        """
        nodes = list(volumeNodes) if isinstance(volumeNodes, (list, tuple)) else [volumeNodes]
        if not nodes or any(node is None for node in nodes):
            raise InputError("no volume selected")
        for node in nodes:
            volume_node_geometry(node)
        # Imported here, not at the top: Slicer imports every scripted module at startup, and these load PyTorch.
        from sparsert.interactive import DEFAULT_MODEL
        from sparsert.interactive.session import RefinementSession
        from sparsert.models.icr import load_click_model
        from sparsert.models.registry import resolve_weights

        names = [model] if isinstance(model, str) else list(model or [DEFAULT_MODEL])
        paths = [resolve_weights(name, task="refinement")[0] for name in names]
        clickModel = load_click_model(paths, device)
        session = RefinementSession.from_volumes(
            clickModel, [volume_from_node(node) for node in nodes], names=[f"'{node.GetName()}'" for node in nodes]
        )
        result = session.initial()
        name = self.scene.GenerateUniqueName(f"{nodes[0].GetName()}_Tumour")
        self.segmentationNode = add_segmentation_node(self.scene, session.segmentation("Tumour"), name, nodes[0])
        self.session, self._referenceNode = session, nodes[0]
        return result

    def addClick(self, ras, positive: bool):
        """Refine with a click at ``ras`` (world RAS mm): positive inside missed tumour, negative on
        wrongly included tissue. Returns the session's step result (changed voxels, time, warnings)."""
        return self._apply(lambda session: session.add_click_ras(ras, positive))

    def undo(self):
        """Take back the last click."""
        return self._apply(lambda session: session.undo())

    def redo(self):
        """Re-apply the last undone click."""
        return self._apply(lambda session: session.redo())

    @property
    def canUndo(self) -> bool:
        return self.session is not None and self.session.can_undo

    @property
    def canRedo(self) -> bool:
        return self.session is not None and self.session.can_redo

    def _apply(self, action):
        if self.session is None:
            raise InputError("no tumour segmentation to refine: segment the tumour first")
        if self.scene.GetNodeByID(self.segmentationNode.GetID()) is None:
            raise InputError(
                f"the segmentation '{self.segmentationNode.GetName()}' being refined was removed from the scene: "
                "segment the tumour again"
            )
        result = action(self.session)
        update_segmentation_node(self.segmentationNode, self.session.segmentation("Tumour"), self._referenceNode)
        return result

"""InteractiveRefine's processing on MRML nodes.

Qt-free on purpose: ``InteractiveRefine.py`` (which needs Qt) adds only the parameter node and the
click placement on top of :class:`InteractiveRefineSceneLogic`, and the test suite runs this class
under the slicer-core wheel.

One refinement session at a time: :meth:`~InteractiveRefineSceneLogic.segmentTumour` starts it
(automatic result in a new segmentation node); each click, undo and redo rewrites only the region
of that node's labelmap that changed, in place, and records the applied clicks, the model and the input volumes in a tag of its segment
(:data:`REFINEMENT_TAG`, saved with the scene and in ``.seg.nrrd`` files), from which
:meth:`~InteractiveRefineSceneLogic.resumeSession` rebuilds the session after a scene is reloaded.
"""

from __future__ import annotations

import json

import vtk

from sparsert.errors import InputError
from sparsert.mrml import (
    add_segmentation_node,
    changed_box,
    update_segment_region,
    update_segmentation_node,
    volume_from_node,
    volume_node_geometry,
)

SEGMENT = "Tumour"
REFINEMENT_TAG = "SparseRT.Refinement"


class InteractiveRefineSceneLogic:
    """Automatic gross-tumour segmentation refined by clicks, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: InteractiveRefineLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene
        self.session = None
        self.segmentationNode = None
        self._volumeNodes = []
        self._models = []
        self._shownMask = None  # what the node's tumour segment holds, on the first volume's grid

    def segmentTumour(self, volumeNodes, model=None, device="cpu"):
        """Segment the gross tumour automatically and start a refinement session; the result goes
        into a new segmentation node, ``segmentationNode`` (``<first volume>_Tumour``, on the first
        volume's grid). Returns the session's step result (voxels, seconds).

        ``volumeNodes``: one volume node or a list, in the model's modality order (CT then PET for
        the shipped model); the first defines the output grid, the others are resampled onto it
        through physical space. ``model``: registered refinement model(s) or model file(s) (a list
        averages an ensemble; default: the shipped one). Raises :class:`InputError` for a missing,
        empty or non-co-registered volume and :class:`MissingComponentError` when weights are
        missing; a running session and its node are kept as they were then.
        """
        nodes, models, session = self._newSession(volumeNodes, model, device)
        result = session.initial()
        name = self.scene.GenerateUniqueName(f"{nodes[0].GetName()}_{SEGMENT}")
        node = add_segmentation_node(self.scene, session.segmentation(SEGMENT), name, nodes[0])
        self._adopt(session, node, nodes, models)
        return result

    def resumeSession(self, segmentationNode, volumeNodes=None, model=None, device="cpu"):
        """Continue refining a segmentation this module made (e.g. in a reloaded scene): the automatic
        result is recomputed and the recorded clicks replayed. Volumes and model default to the
        recorded ones. Returns the number of clicks replayed."""
        record = refinementRecord(segmentationNode)
        if volumeNodes is None:
            volumeNodes = [self.scene.GetNodeByID(nodeId) for nodeId in record["volumes"]]
            if any(node is None for node in volumeNodes):
                raise InputError(
                    f"the volumes segmentation '{segmentationNode.GetName()}' was made from are no longer in the scene: "
                    "select them and resume again"
                )
        nodes, models, session = self._newSession(volumeNodes, model or record["models"], device)
        session.initial()
        for click in record["clicks"]:
            session.add_click(click["ijk"], click["positive"])
        self._adopt(session, segmentationNode, nodes, models)
        return len(record["clicks"])

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

    def accept(self):
        """End the session: the segmentation stays as an ordinary segmentation (clicks still recorded)."""
        self._requireSession()
        node = self.segmentationNode
        self.session, self.segmentationNode, self._volumeNodes, self._models = None, None, [], []
        self._shownMask = None
        return node

    @property
    def canUndo(self) -> bool:
        return self.session is not None and self.session.can_undo

    @property
    def canRedo(self) -> bool:
        return self.session is not None and self.session.can_redo

    # Internals -------------------------------------------------------------------------------

    def _newSession(self, volumeNodes, model, device):
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

        models = [model] if isinstance(model, str) else list(model or [DEFAULT_MODEL])
        paths = [resolve_weights(name, task="refinement")[0] for name in models]
        session = RefinementSession.from_volumes(
            load_click_model(paths, device), [volume_from_node(node) for node in nodes],
            names=[f"'{node.GetName()}'" for node in nodes],
        )
        return nodes, models, session

    def _adopt(self, session, segmentationNode, nodes, models) -> None:
        self.session, self.segmentationNode, self._volumeNodes, self._models = session, segmentationNode, nodes, models
        self._shownMask = None  # the whole node is written once
        self._show()

    def _requireSession(self):
        if self.session is None:
            raise InputError("no tumour segmentation to refine: segment the tumour first")
        if self.scene.GetNodeByID(self.segmentationNode.GetID()) is None:
            raise InputError(
                f"the segmentation '{self.segmentationNode.GetName()}' being refined was removed from the scene: "
                "segment the tumour again"
            )
        return self.session

    def _apply(self, action):
        result = action(self._requireSession())
        self._show()
        return result

    def _show(self) -> None:
        """The session's mask into the node (only the box where it changed, after the first time),
        with the record that lets it be resumed."""
        result = self.session.segmentation(SEGMENT)
        mask = result[SEGMENT].mask
        if self._shownMask is None:
            update_segmentation_node(self.segmentationNode, result, self._volumeNodes[0])
        else:
            box = changed_box(self._shownMask, mask)
            if box is not None:
                update_segment_region(self.segmentationNode, SEGMENT, mask, result.geometry, box)
        self._shownMask = mask
        record = {
            "models": self._models,
            "volumes": [node.GetID() for node in self._volumeNodes],
            "clicks": [{"ijk": list(ijk), "positive": positive} for ijk, positive in self.session.applied_clicks],
        }
        segmentation = self.segmentationNode.GetSegmentation()
        segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(SEGMENT)).SetTag(REFINEMENT_TAG, json.dumps(record))


def refinementRecord(segmentationNode) -> dict:
    """What :data:`REFINEMENT_TAG` of the node's tumour segment holds: models, volume node IDs, clicks."""
    if segmentationNode is None:
        raise InputError("no segmentation selected")
    segmentation = segmentationNode.GetSegmentation()
    segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(SEGMENT))
    text = vtk.reference("")
    if segment is None or not segment.GetTag(REFINEMENT_TAG, text):
        raise InputError(
            f"segmentation '{segmentationNode.GetName()}' has no recorded refinement: only segmentations made by "
            "InteractiveRefine can be resumed"
        )
    try:
        record = json.loads(str(text))
        if not isinstance(record["models"], list) or not isinstance(record["volumes"], list):
            raise TypeError("models and volumes must be lists")
        clicks = [{"ijk": [float(v) for v in c["ijk"]], "positive": bool(c["positive"])} for c in record["clicks"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"segmentation '{segmentationNode.GetName()}': unreadable refinement record ({exc})") from None
    return {"models": record["models"], "volumes": record["volumes"], "clicks": clicks}

"""CrossModalSeg's processing on MRML nodes.

Qt-free on purpose: ``CrossModalSeg.py`` (which needs Qt) adds only the parameter node on top of
:class:`CrossModalSegSceneLogic`, and the test suite runs this class under the slicer-core wheel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparsert.background import BackgroundTask
from sparsert.errors import InputError
from sparsert.mrml import add_segmentation_node, segmentation_from_node, volume_from_node, volume_node_geometry


@dataclass
class TumourResult:
    """The segmentation node :meth:`CrossModalSegSceneLogic.segmentTumour` added, and its warnings."""

    segmentationNode: object
    warnings: list[str] = field(default_factory=list)


class CrossModalSegSceneLogic:
    """Tumour segmentation from a CT and an MR of the same patient, with results added to ``scene``."""

    def __init__(self, scene) -> None:
        super().__init__()  # cooperative: CrossModalSegLogic also derives from ScriptedLoadableModuleLogic
        self.scene = scene

    def segmentTumour(self, ctNode, mrNode, model=None, device="cpu", scribblesNode=None, fineTuneSteps=30) -> TumourResult:
        """Segment the tumour from both images in the calling thread; :meth:`tumourTask` does the
        same off the GUI thread."""
        return self.tumourTask(ctNode, mrNode, model, device, scribblesNode, fineTuneSteps).run()

    def tumourTask(self, ctNode, mrNode, model=None, device="cpu", scribblesNode=None, fineTuneSteps=30):
        """A :class:`~sparsert.background.BackgroundTask` segmenting the tumour; its result, a
        :class:`TumourResult`, adds a segmentation node ``<CT>_Tumour`` on the CT grid.

        The MR must already be registered to the CT (parent transforms count). Without an MR the CT
        alone is used and the result carries a warning. ``model`` is a registered cross-modal model
        or a checkpoint file (default: the shipped one). With ``scribblesNode`` (a segmentation with
        tumour scribbles and optionally a ``Background`` segment) a copy of the model is first
        fine-tuned on this case for ``fineTuneSteps`` steps; the scribbles are only read. Raises
        :class:`InputError` when the CT is missing, the two images do not overlap in physical space or
        the scribbles hold no tumour stroke, and :class:`MissingComponentError` when the model's
        weights are missing; nothing is added then, nor when the task is cancelled.
        """
        if ctNode is None:
            raise InputError("no CT volume selected")
        ctGrid = volume_node_geometry(ctNode)
        if mrNode is not None:
            mrGrid = volume_node_geometry(mrNode)
            if not ctGrid.overlaps(mrGrid):
                raise InputError(
                    f"CT '{ctNode.GetName()}' ({ctGrid.describe()}) and MR '{mrNode.GetName()}' ({mrGrid.describe()}) "
                    "do not overlap in physical space: register the MR to the CT first"
                )
        ct = volume_from_node(ctNode)
        mr = volume_from_node(mrNode) if mrNode is not None else None
        ctName = f"CT '{ctNode.GetName()}'"
        mrName = f"MR '{mrNode.GetName()}'" if mrNode is not None else "MR"
        # Read here, in the calling (GUI) thread: MRML nodes are not touched from the worker.
        scribbles = segmentation_from_node(scribblesNode, ctGrid) if scribblesNode is not None else None
        scribblesName = f"scribbles '{scribblesNode.GetName()}'" if scribblesNode is not None else ""

        def work(progress):
            # Imported here, not at the top: Slicer imports every scripted module at startup, and this loads PyTorch.
            from sparsert.crossmodal import DEFAULT_MODEL, FineTuning, load_model, segment_tumour

            progress.report("Loading the model")
            loaded = load_model(model or DEFAULT_MODEL, device=device)
            progress.report("Fine-tuning on the scribbles" if scribbles is not None else "Segmenting the tumour")

            def onStep(step, steps):
                progress.report(f"Fine-tuning on the scribbles: step {step} of {steps}" if step < steps
                                else "Segmenting the tumour")

            return segment_tumour(
                ct, mr, loaded, ct_name=ctName, mr_name=mrName, scribbles=scribbles, scribbles_name=scribblesName,
                fine_tuning=FineTuning(steps=fineTuneSteps), on_step=onStep,
            )

        def finish(segmentation) -> TumourResult:
            name = self.scene.GenerateUniqueName(f"{ctNode.GetName()}_{segmentation.segments[0].name}")
            node = add_segmentation_node(self.scene, segmentation, name, ctNode)
            return TumourResult(node, list(segmentation.warnings))

        return BackgroundTask(work, finish)

"""Cross-modal (CT + MR) tumour segmentation with a network trained from scribbles (CmFNet)."""

from sparsert.crossmodal.inference import (
    DEFAULT_MODEL,
    TUMOUR,
    CrossModalModel,
    TumourSegmentation,
    load_checkpoint,
    load_model,
    segment_tumour,
)
from sparsert.crossmodal.finetune import FineTuning
from sparsert.crossmodal.preprocess import PreprocessConfig, prepare_inputs, read_transform

__all__ = [
    "DEFAULT_MODEL",
    "TUMOUR",
    "CrossModalModel",
    "FineTuning",
    "PreprocessConfig",
    "TumourSegmentation",
    "load_checkpoint",
    "load_model",
    "prepare_inputs",
    "read_transform",
    "segment_tumour",
]

"""Tumour segmentation from a CT and an MR with a trained cross-modal network.

``segment_tumour(ct, mr, model)`` returns one "Tumour" segment on the CT grid. The MR is brought
onto the CT through physical space (and a transform when given); without an MR the CT feeds both
branches (CT-only fallback, with a warning unless the model was trained that way).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from sparsert.crossmodal.preprocess import PreprocessConfig, prepare_inputs
from sparsert.data.sts import GTV_COLOR
from sparsert.device import inference_autocast, resolve_device
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Volume, resample
from sparsert.masks import largest_component
from sparsert.models.cmfnet import CmFNetConfig, build_network
from sparsert.models.model_file import building_from, read_model_file
from sparsert.models.registry import resolve_weights
from sparsert.models.scm import crop_back, pad_to_multiple

if TYPE_CHECKING:
    from sparsert.crossmodal.finetune import FineTuning

DEFAULT_MODEL = "crossmodal"
TASK = "crossmodal"
TUMOUR = "Tumour"
CHECKPOINT_KIND = "cross-modal segmentation checkpoint"
# Larger working volumes go through overlapping windows (bounded memory and time).
WHOLE_VOLUME_MAX_VOXELS = 128 * 128 * 96
WINDOW = (64, 128, 128)
# The context ensemble: the whole-volume pass averaged with one over tiles (no overlap) of the training
# patch (k, j, i working voxels). Why: with instance norm and zero padding the network's answer for a voxel
# depends on how much of the volume it sees; on the 20 STS patients one context gave some patients
# Dice near 0 that the other got right, and the mean of the two beat the whole-volume pass alone
# (model card `crossmodal`, session 29).
CONTEXT_TILE = (32, 64, 64)


@dataclass
class CrossModalModel:
    """A trained network with the preprocessing it was trained with."""

    net: nn.Module
    preprocessing: PreprocessConfig
    source: str = ""

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device


@dataclass
class TumourSegmentation(Segmentation):
    """The segmentation and what the run had to say about its inputs."""

    warnings: list[str] = field(default_factory=list)


def load_model(name_or_path: str = DEFAULT_MODEL, device: str | torch.device = "cpu") -> CrossModalModel:
    """A registered model (by name) or a checkpoint file (``best.pt`` of a run), in eval mode."""
    path, _ = resolve_weights(name_or_path, task=TASK)
    return load_checkpoint(path, device)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> CrossModalModel:
    state = read_model_file(path, CHECKPOINT_KIND)
    with building_from(path, CHECKPOINT_KIND):
        net = build_network(CmFNetConfig.from_dict(state["config"]))
        net.load_state_dict(state["model"])
        preprocessing = PreprocessConfig.from_dict(state["metadata"]["preprocessing"])
    return CrossModalModel(net.to(resolve_device(device)).eval(), preprocessing, str(path))


@torch.no_grad()
def predict_probability(
    net: nn.Module, ct: np.ndarray, mr: np.ndarray, contexts: bool = True, precision: str = "auto"
) -> np.ndarray:
    """Tumour probability (D, H, W) from the fused output over the whole working volume: the mean of
    the context ensemble (:data:`CONTEXT_TILE`), or with ``contexts=False`` the whole-volume pass alone;
    ``precision`` is the network's number type (:func:`sparsert.device.resolve_precision`)."""
    device = next(net.parameters()).device
    x = torch.from_numpy(np.stack([ct, mr]).astype(np.float32))[None].to(device)

    def fused(t: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(net(t[:, :1], t[:, 1:])["fused"])

    with inference_autocast(net, precision):
        if ct.size <= WHOLE_VOLUME_MAX_VOXELS:
            padded, size = pad_to_multiple(x, net.config.size_multiple)
            prob = crop_back(fused(padded), size)
        else:
            prob = sliding_window_inference(x, WINDOW, 1, fused, overlap=0.25, mode="gaussian")
        if contexts:
            # Batched tiles: on 2 CPU threads a batch of 4 takes about half the time of 4 single passes.
            tiles = sliding_window_inference(x, CONTEXT_TILE, 4, fused, overlap=0.0)
            prob = (prob + tiles) / 2
    return prob[0, 0].float().cpu().numpy()


def segment_tumour(
    ct: Volume,
    mr: Volume | None,
    model: CrossModalModel,
    *,
    transform: sitk.Transform | None = None,
    ct_name: str = "CT",
    mr_name: str = "MR",
    keep_largest: bool = True,
    contexts: bool = True,
    precision: str = "auto",
    scribbles: Segmentation | None = None,
    scribbles_name: str = "scribbles",
    fine_tuning: "FineTuning | None" = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TumourSegmentation:
    """The tumour on the CT grid from ``ct`` and ``mr`` (None: CT-only fallback).

    ``transform`` maps CT points into the MR's space (a registration with the CT as fixed image);
    ``keep_largest`` keeps the largest connected part only (one mass); ``contexts=False`` runs the
    whole-volume pass alone instead of the context ensemble (the ablation); ``precision``: see
    :func:`predict_probability`. With ``scribbles`` (tumour
    segments and an optional ``Background``, on a grid overlapping the CT's) a copy of the model is
    first fine-tuned on this case (:mod:`sparsert.crossmodal.finetune`, settings ``fine_tuning``,
    ``on_step(step, steps)`` after each step). Bad inputs raise :class:`InputError` naming
    ``ct_name``/``mr_name``.
    """
    warnings = []
    if mr is None and not model.preprocessing.ct_only:
        warnings.append(
            f"no MR given: segmenting from {ct_name} alone (the CT feeds both branches of a model trained with MR; "
            "expect lower accuracy than with the MR, or use a CT-only model)"
        )
    elif mr is not None and model.preprocessing.ct_only:
        warnings.append(f"the model is CT-only: {mr_name} was not used")
    inputs = prepare_inputs(ct, mr, model.preprocessing, transform=transform, ct_name=ct_name, mr_name=mr_name)
    if scribbles is not None:
        from sparsert.crossmodal.finetune import fine_tuned  # it builds on the training code, which imports this module

        model = fine_tuned(model, inputs, scribbles, fine_tuning, name=scribbles_name, on_step=on_step)
    prob = predict_probability(model.net, inputs.ct, inputs.mr, contexts, precision)
    on_ct = resample(Volume(prob, inputs.geometry), ct.geometry).array
    mask = on_ct >= 0.5
    if keep_largest:
        mask = largest_component(mask)
    if not mask.any():
        warnings.append("no tumour found (no voxel reached probability 0.5)")
    return TumourSegmentation(ct.geometry, [Segment(TUMOUR, mask, GTV_COLOR)], warnings=warnings)

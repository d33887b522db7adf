"""Scribble completion with the trained SCM network (the ``scm`` method)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sparsert.completion.contract import CompletedSegmentation, prepare_seeds, rest_seeds
from sparsert.completion.scm_forward import Box, scm_pass
from sparsert.device import inference_autocast, resolve_device
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Volume
from sparsert.masks import bounding_box
from sparsert.models.model_file import building_from, read_model_file
from sparsert.models.registry import resolve_weights
from sparsert.models.scm import SCMConfig, SCMNet
from sparsert.preprocessing.ct import ct_channels

DEFAULT_MODEL = "scm"
CHECKPOINT_KIND = "scribble-completion checkpoint"


def load_scm(name_or_path: str = DEFAULT_MODEL, device: str | torch.device = "cpu") -> SCMNet:
    """An SCM network with trained weights (registry name or checkpoint path), in eval mode."""
    path, _ = resolve_weights(name_or_path, task="completion")
    return load_scm_checkpoint(path, device)


def load_scm_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> SCMNet:
    state = read_model_file(path, CHECKPOINT_KIND)
    with building_from(path, CHECKPOINT_KIND):
        # Weights saved before the full-resolution head existed have none.
        net = SCMNet(SCMConfig.from_dict({"head_channels": 0, **state["config"]}))
        net.load_state_dict(state["model"])
    return net.to(resolve_device(device)).eval()


@torch.no_grad()
def predict_probabilities(
    net: SCMNet, image: np.ndarray, structures: np.ndarray, background: np.ndarray, spacing_kji,
    flips: bool = False, precision: str = "auto",
) -> np.ndarray:
    """Per-structure probability volumes (K, D, H, W) float32; zero outside each structure's crop.

    ``flips`` averages with the pass on the left-right mirrored inputs (twice the time); ``precision``
    is the network's number type (:func:`sparsert.device.resolve_precision`).
    """
    roi, probs, distances = _network_probabilities(net, image, structures, background, spacing_kji, precision)
    if flips:
        mirrored = [np.ascontiguousarray(a[..., ::-1]) for a in (image, structures, background)]
        # A mirrored scribble's distance map is the mirrored map: no second distance transform.
        mirrored_distances = {k: d[..., ::-1] for k, d in distances.items()}
        mirrored_roi, mirrored_probs, _ = _network_probabilities(
            net, *mirrored, spacing_kji, precision, mirrored_distances
        )
        # The region of interest is the scribbles' box, so the mirrored pass's is its mirror image.
        assert mirrored_roi[-1] == mirror_slice(roi[-1], image.shape[-1]) and mirrored_roi[:-1] == roi[:-1]
        probs += mirrored_probs[..., ::-1]
        probs *= 0.5
    # Averaged and filled in on the region of interest only: outside it every probability is zero, and
    # full-volume arithmetic on one volume per structure cost about a quarter of the completion time.
    full = np.zeros(structures.shape, dtype=np.float32)
    full[(slice(None),) + roi] = probs
    return full


def mirror_slice(index: slice, size: int) -> slice:
    """The slice that selects, in an axis of ``size`` mirrored, what ``index`` selects unmirrored."""
    return slice(size - index.stop, size - index.start)


def _network_probabilities(
    net: SCMNet, image: np.ndarray, structures: np.ndarray, background: np.ndarray, spacing_kji, precision: str,
    distances: dict[int, np.ndarray] | None = None,
) -> tuple[Box, np.ndarray, dict[int, np.ndarray]]:
    """The region of interest, the probabilities (K, *its shape) in it and the structures' distance maps
    (see :func:`~sparsert.completion.scm_forward.scm_pass`)."""
    device = next(net.parameters()).device
    with inference_autocast(net, precision):
        result = scm_pass(net, image, structures, background, spacing_kji, device=device, distances=distances)
    probs = np.zeros((structures.shape[0],) + tuple(r.stop - r.start for r in result.roi), dtype=np.float32)
    for out in result.structures:
        probs[(out.index,) + out.box] = torch.sigmoid(out.logits.float())[0, 0].cpu().numpy()
    return result.roi, probs, {out.index: out.distance for out in result.structures}


def masks_from_probabilities(
    probs: np.ndarray,
    structures: np.ndarray,
    background: np.ndarray,
    competitors: Sequence[frozenset[int]],
) -> np.ndarray:
    """Threshold at 0.5; a voxel claimed by structures that cannot overlap (``competitors``, see
    :func:`sparsert.completion.contract.competing_structures`) goes to the most probable of them;
    scribbles are honoured; only connected parts holding a scribble are kept."""
    claimed = probs >= 0.5
    masks = np.zeros(probs.shape, dtype=bool)
    # Outside the box of what is claimed or scribbled every mask is empty, so the work stays inside it.
    box = bounding_box(claimed.any(0) | structures.any(0), (0, 0, 0), probs.shape[1:])
    if box is not None:
        inside = (slice(None),) + box
        masks[inside] = _masks_in_box(probs[inside], claimed[inside], structures[inside], background[box], competitors)
    return masks


def _masks_in_box(
    probs: np.ndarray, claimed: np.ndarray, structures: np.ndarray, background: np.ndarray,
    competitors: Sequence[frozenset[int]],
) -> np.ndarray:
    masks = claimed.copy()
    for k, rivals in enumerate(competitors):
        for j in rivals:
            # Ties go to the lower index, so exactly one of two equally probable rivals keeps the voxel.
            beats = (probs[j] > probs[k]) | ((probs[j] == probs[k]) & (j < k))
            masks[k] &= ~(claimed[j] & beats)
    for k in range(masks.shape[0]):
        m = (masks[k] | structures[k]) & ~rest_seeds(k, structures, background, competitors)
        labels, n = ndimage.label(m)
        if n > 1:
            keep = np.unique(labels[structures[k] & (labels > 0)])
            m = np.isin(labels, keep)
        masks[k] = m
    return masks


def complete_scm(
    image: Volume,
    scribbles: Segmentation,
    *,
    model: str = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    net: SCMNet | None = None,
    auto_background: bool = False,
    background_margin_mm: float = 20.0,
    flips: bool = True,
    precision: str = "auto",
) -> CompletedSegmentation:
    """Dense structures from scribbles with the trained SCM network (the completion contract).

    One segment per scribbled structure, names and colours kept, overlapping where the contract's
    rule allows (a target and an organ); ``net`` reuses a
    loaded network (the Slicer module keeps one), otherwise ``model`` (registry name or file) is loaded.
    ``flips`` and ``precision``: see :func:`predict_probabilities`; the mirrored pass is on by default
    because it lifts completion and the dose predicted from it for twice the network time (model card).
    """
    seeds = prepare_seeds(image, scribbles, auto_background=auto_background, background_margin_mm=background_margin_mm)
    net = net or load_scm(model, device=device)
    stack = np.stack(seeds.foreground)
    probs = predict_probabilities(
        net, ct_channels(image.array), stack, seeds.background, image.geometry.spacing_kji, flips, precision
    )
    masks = masks_from_probabilities(probs, stack, seeds.background, seeds.competitors)
    segments = [Segment(n, m, c) for n, m, c in zip(seeds.names, masks, seeds.colors)]
    return CompletedSegmentation(image.geometry, segments, warnings=list(seeds.warnings))

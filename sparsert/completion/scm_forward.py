"""One SCM pass over a case: region of interest, features, centroids, and per-structure crops.

Shared by training and inference so that both see exactly the same inputs. Work is restricted to
boxes around the scribbles (plus a physical margin), which keeps a 128^3 case fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from sparsert.masks import bounding_box
from sparsert.models.scm import SCMNet, crop_back, pad_to_multiple

Box = tuple[slice, slice, slice]

# Margins around scribbles, in mm (k, j, i): structures extend beyond the slices and lines drawn.
ROI_MARGIN_MM = (36.0, 60.0, 60.0)
STRUCTURE_MARGIN_MM = (30.0, 45.0, 45.0)


@dataclass
class StructureLogits:
    index: int  # position among the structures
    box: Box  # crop of the region of interest the logits cover (ROI coordinates)
    logits: torch.Tensor  # (1, 1, D, H, W)
    distance: np.ndarray  # (D, H, W) the decoder's distance-to-own-scribble input on the box


@dataclass
class SCMPass:
    roi: Box  # region of interest in the input volume
    features: torch.Tensor  # (1, C, D, H, W) on the ROI, l2-normalised
    centroids: torch.Tensor  # (1, K + 1, C): structures, then background
    present: torch.Tensor  # (1, K + 1) bool: classes with scribbles in the ROI
    scribbles: torch.Tensor  # (1, K + 1, D, H, W) on the ROI
    structures: list[StructureLogits]


def margin_voxels(margin_mm: tuple[float, float, float], spacing_kji: tuple[float, float, float]) -> tuple[int, int, int]:
    return tuple(int(np.ceil(m / s)) for m, s in zip(margin_mm, spacing_kji))  # type: ignore[return-value]


def distance_map(scribble: np.ndarray, spacing_kji: tuple[float, float, float], scale_mm: float) -> np.ndarray:
    """Distance to the nearest scribble voxel in mm, divided by ``scale_mm``."""
    if not scribble.any():
        return np.full(scribble.shape, 10.0, dtype=np.float32)
    return (ndimage.distance_transform_edt(~scribble, sampling=spacing_kji) / scale_mm).astype(np.float32)


def scm_pass(
    net: SCMNet,
    image: np.ndarray,
    structure_scribbles: np.ndarray,
    background_scribble: np.ndarray,
    spacing_kji: tuple[float, float, float],
    roi: Box | None = None,
    device: torch.device | str = "cpu",
    distances: Mapping[int, np.ndarray] | None = None,
) -> SCMPass:
    """Run the network on one case.

    image (C, D, H, W) float32 network channels; structure_scribbles (K, D, H, W) bool;
    background_scribble (D, H, W) bool. ``roi`` defaults to the box around all structure scribbles.
    ``distances`` gives structures' :func:`distance_map` on their boxes where they are already known
    (e.g. mirrored from the unmirrored pass); the others are computed.
    """
    shape = image.shape[1:]
    if roi is None:
        roi = bounding_box(structure_scribbles.any(0), margin_voxels(ROI_MARGIN_MM, spacing_kji), shape)
        if roi is None:
            raise ValueError("no structure scribbles")
    levels = len(net.config.encoder_channels) - 1
    img = torch.from_numpy(np.ascontiguousarray(image[(slice(None),) + roi])).float().to(device)[None]
    scr_np = np.concatenate([structure_scribbles, background_scribble[None]])[(slice(None),) + roi]
    scr = torch.from_numpy(scr_np.astype(np.float32)).to(device)[None]

    padded, size = pad_to_multiple(img, 2**levels)
    features = crop_back(net.features(padded), size)
    centroids = net.centroids(features, scr)
    present = scr.flatten(2).sum(-1) > 0
    sims = net.similarities(features, centroids)
    # Absent classes must not win the rival similarity.
    sims = sims.masked_fill(~present[:, :, None, None, None], -1e4)

    margin = margin_voxels(STRUCTURE_MARGIN_MM, spacing_kji)
    multiple = 2 ** (len(net.config.decoder_channels) - 1)
    outputs = []
    n_structures = structure_scribbles.shape[0]
    for k in range(n_structures):
        box = bounding_box(scr_np[k], margin, scr_np.shape[1:])
        if box is None:
            continue
        crop = (slice(None), slice(None)) + box
        # Cropped before the per-voxel maxima: they are elementwise, and the crop is a fraction of the ROI.
        box_sims, box_scr = sims[crop], scr[crop]
        rival = torch.cat([box_sims[:, :k], box_sims[:, k + 1 :]], dim=1).max(dim=1, keepdim=True).values
        other_structs = torch.cat([box_scr[:, :k], box_scr[:, k + 1 : n_structures]], dim=1)
        other_structs = (
            other_structs.amax(dim=1, keepdim=True) if other_structs.shape[1] else torch.zeros_like(box_scr[:, -1:])
        )
        if distances is not None and k in distances:
            own_distance = np.ascontiguousarray(distances[k])
            assert own_distance.shape == scr_np[k][box].shape, "distance map of another box"
        else:
            own_distance = distance_map(scr_np[k][box], spacing_kji, net.config.distance_scale_mm)
        dist = torch.from_numpy(own_distance).to(device)
        inputs = dict(
            image=img[crop], own_similarity=box_sims[:, k : k + 1], rival_similarity=rival,
            own_scribble=box_scr[:, k : k + 1], background_scribble=box_scr[:, -1:],
            other_scribbles=other_structs, own_distance=dist[None, None],
        )
        decoder_inputs = {name: pad_to_multiple(x, multiple)[0] for name, x in inputs.items()}
        logits = crop_back(net.decode(**decoder_inputs), tuple(s.stop - s.start for s in box))
        outputs.append(StructureLogits(k, box, logits, own_distance))
    return SCMPass(roi, features, centroids, present, scr, outputs)

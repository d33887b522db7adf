"""Dose prediction with a trained dose network: loading, the working-grid pass, checks of the domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from sparsert.device import inference_autocast, resolve_device
from sparsert.dose.grid import as_batch, body_box, flip_lr, pad_to_multiple, to_ct_grid, to_working, working_shape
from sparsert.dose.inputs import ORGAN_CHANNELS, ORGANS, DoseInputs, dose_inputs
from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.models.dose_rmt import DoseNet, DoseNetConfig, DoseRefiner
from sparsert.models.model_file import building_from, read_model_file
from sparsert.models.registry import resolve_weights
from sparsert.roles import StructureRole

# The registered models: one trained on dense structures, one on structures completed from scribbles.
MASK_MODEL = "dose-mask"
SCRIBBLE_MODEL = "dose-scribble"
CHECKPOINT_KIND = "dose-prediction checkpoint"
PAROTIDS = (ORGANS.index("RightParotid"), ORGANS.index("LeftParotid"))
# How far outside the training cases' range a case may lie before it is refused as out of domain.
DOMAIN_MARGIN = 1.5
# Sliding windows: grown by up to this share of the training window to span the body's box in one window
# along an axis, and overlapping by this share. Against the training window at overlap 0.5 this about
# halves the windows of the larger OpenKBP cases (6.8 -> 3.0 on average over the validation cases) with
# no measured change in the dose error (+0.002 +- 0.031 Gy from scribbles, -0.001 +- 0.024 Gy from masks,
# 10 held-back training cases; see the dose-scribble model card).
WINDOW_FIT = 0.2
WINDOW_OVERLAP = 0.25


@dataclass
class DoseModel:
    net: DoseNet
    working_spacing_kji: tuple[float, float, float]
    # Ranges seen in training, e.g. {"median_body_area_cm2": [lo, hi]}; empty: no domain check.
    domain: dict[str, list[float]] = field(default_factory=dict)
    window: tuple[int, int, int] | None = None  # the training crop: inference runs in such windows
    source: str = ""
    # What it was trained on: "mask" dense structures, "completed" structures completed from scribbles
    # (both given structures; scribbles are completed first), "scribble" the baseline trained on
    # scribbles in the structure channels, which takes them as drawn.
    prompt: str = "mask"


def default_model(prompt: str) -> str:
    """The registered dose model for dense structures (``prompt="mask"``) or for scribbles, completed
    into structures first (``"scribble"``): the latter was trained on such completions."""
    return SCRIBBLE_MODEL if prompt == "scribble" else MASK_MODEL


def load_dose_model(name_or_path: str = MASK_MODEL, device: str | torch.device = "cpu") -> DoseModel:
    """A dose model with trained weights (registry name or checkpoint path), in eval mode."""
    path, _ = resolve_weights(name_or_path, task="dose")
    return load_dose_checkpoint(path, device)


def load_dose_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> DoseModel:
    state = read_model_file(path, CHECKPOINT_KIND)
    with building_from(path, CHECKPOINT_KIND):
        net = DoseNet(DoseNetConfig.from_dict(state["config"]))
        net.load_state_dict(state["model"])
        metadata = state.get("metadata", {})
        working_spacing_kji = tuple(metadata["working_spacing_kji"])
    return DoseModel(
        net=net.to(resolve_device(device)).eval(),
        working_spacing_kji=working_spacing_kji,
        domain=metadata.get("domain", {}),
        window=tuple(metadata["crop"]) if "crop" in metadata else None,
        source=str(path),
        prompt=metadata.get("prompt", "mask"),
    )


def takes_scribbles(model: DoseModel, prompt: str) -> bool:
    """Whether ``model`` is given scribbles as drawn (the scribble-trained baseline) rather than structures
    completed from them; InputError when dense structures (``prompt="mask"``) are given to that baseline."""
    if model.prompt != "scribble":
        return False
    if prompt != "scribble":
        raise InputError(f"the dose model {model.source} was trained on scribbles in place of structures "
                         "(the scribble baseline): give it scribbles, not dense structures")
    return True


def body_statistics(ct_body: np.ndarray, spacing_kji) -> dict[str, float]:
    """Size of the patient's body as found from the CT (:func:`automatic_body`, whatever
    possible-dose mask is given), to tell head-and-neck fields from others."""
    areas = ct_body.sum(axis=(1, 2)) * spacing_kji[1] * spacing_kji[2] / 100.0
    areas = areas[areas > 0]
    return {"median_body_area_cm2": float(np.median(areas)) if areas.size else 0.0}


def check_domain(model: DoseModel, ct_body: np.ndarray, spacing_kji) -> None:
    """InputError when the CT's body looks unlike the training cases' (e.g. a thorax or pelvis field)."""
    for key, value in body_statistics(ct_body, spacing_kji).items():
        if key not in model.domain:
            continue
        lo, hi = model.domain[key]
        if not lo / DOMAIN_MARGIN <= value <= hi * DOMAIN_MARGIN:
            raise InputError(
                f"the CT is outside the dose model's training domain ({key} = {value:.0f}, trained on "
                f"{lo:.0f}..{hi:.0f}); the model was trained on head-and-neck CTs and would not give a meaningful dose"
            )


def network_dose(net: DoseNet, channels: torch.Tensor, window: Sequence[int] | None = None, flips: bool = False) -> torch.Tensor:
    """Dose / highest prescription on the working grid from (B, C, *working_shape) channels.

    With ``window`` (the training crop size) the volume is predicted in overlapping windows about that
    size, blended with Gaussian weights: the network's instance normalisation then sees inputs like
    those it was trained on (whole-volume passes scored about 0.6-0.9 Gy worse in the dose error).
    The windows cover only the body's bounding box, where the dose can be non-zero: on the OpenKBP
    cases that takes about a third of the network time, with the same dose error.
    """

    def padded_pass(x: torch.Tensor) -> torch.Tensor:
        padded, region = pad_to_multiple(x, net.multiple)
        return net(padded)[(slice(None), slice(None)) + region]

    def mirror_averaged(x: torch.Tensor, one_pass) -> torch.Tensor:
        dose = one_pass(x)
        if flips:
            dose = 0.5 * (dose + one_pass(flip_lr(x, ORGAN_CHANNELS.start, PAROTIDS)).flip(-1))
        return dose

    if window is None:
        return mirror_averaged(channels, padded_pass)
    box = (slice(None), slice(None)) + body_box(channels, window)
    roi = fitted_window(window, [s.stop - s.start for s in box[2:]])

    def windowed_pass(x: torch.Tensor) -> torch.Tensor:
        return sliding_window_inference(x, roi, sw_batch_size=2, predictor=padded_pass, overlap=WINDOW_OVERLAP,
                                        mode="gaussian")

    dose = mirror_averaged(channels[box], windowed_pass)
    whole = dose.new_zeros(dose.shape[:2] + channels.shape[2:])
    whole[box] = dose
    return whole


def fitted_window(window: Sequence[int], box_shape: Sequence[int]) -> tuple[int, ...]:
    """The sliding window for a body box: the training window, grown on each axis where the box is at most
    :data:`WINDOW_FIT` larger so that one window spans it (two or three fewer passes for such an axis),
    and never larger than the box, so that MONAI never pads (its zeros would not be air)."""
    return tuple(n if w < n <= w * (1 + WINDOW_FIT) else min(w, n) for w, n in zip(window, box_shape))


def ct_grid_dose(model: DoseModel, channels: torch.Tensor, spacing_kji, flips: bool = False) -> torch.Tensor:
    """Dose / highest prescription (1, 1, *shape), float32, on the CT grid from (1, C, *shape) channels on
    it: the network's working-grid dose brought back, then refined at full resolution when the
    model has a refiner."""
    shape = channels.shape[2:]
    x = to_working(channels, working_shape(shape, spacing_kji, model.working_spacing_kji))
    dose = to_ct_grid(network_dose(model.net, x, model.window, flips).float(), shape)
    if model.net.refiner is not None:
        dose = refined_dose(model.net.refiner, channels, dose)
    return dose


def refined_dose(refiner: DoseRefiner, channels: torch.Tensor, dose: torch.Tensor) -> torch.Tensor:
    """``dose`` (1, 1, *shape) corrected by ``refiner`` inside the body's bounding box (grown by the
    refiner's reach, so that the box's edge does not change the result there); unchanged outside."""
    box = (slice(None), slice(None)) + grown(body_box(channels, (1, 1, 1)), refiner.reach, channels.shape[2:])
    out = dose.clone()
    out[box] = refiner(channels[box], dose[box])
    return out


def grown(box: tuple[slice, ...], margin: int, shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - margin), min(n, s.stop + margin)) for s, n in zip(box, shape))


@torch.no_grad()
def predict_from_inputs(
    model: DoseModel, inputs: DoseInputs, spacing_kji, flips: bool = False, precision: str = "auto"
) -> np.ndarray:
    """Dose (Gy) on the CT grid from prepared inputs; zero outside the possible-dose mask.
    ``precision``: the network's number type (:func:`sparsert.device.resolve_precision`)."""
    device = next(model.net.parameters()).device
    with inference_autocast(model.net, precision):
        dose = ct_grid_dose(model, as_batch(inputs.channels).to(device), spacing_kji, flips)
    dose = dose[0, 0].clamp_min(0).cpu().numpy()
    return (dose * inputs.highest_gy * inputs.body).astype(np.float32)


def predict_dose(
    model: DoseModel,
    ct: Volume,
    structures: Segmentation,
    body: Volume | None = None,
    roles: Mapping[str, StructureRole] | None = None,
    prescriptions: Mapping[str, float] | None = None,
    flips: bool = False,
    precision: str = "auto",
) -> Volume:
    """Predicted dose (float32 Gy) on the CT grid; InputError for input the model cannot use."""
    inputs = dose_inputs(ct, structures, body, roles, prescriptions)
    check_domain(model, inputs.ct_body, ct.geometry.spacing_kji)
    return Volume(predict_from_inputs(model, inputs, ct.geometry.spacing_kji, flips, precision), ct.geometry)

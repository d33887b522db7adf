"""The dose model's input channels, built from a CT and its structures, with the checks of bad input.

Channels (in this order, all on one grid):

- the CT's wide and soft-tissue windows (:func:`sparsert.preprocessing.ct.ct_channels`);
- targets: each target's mask weighted by its prescription over the highest one (max where
  targets overlap);
- one channel per OpenKBP organ, in :data:`ORGANS` order (structures mapped to the same organ
  are merged);
- the possible-dose (body) mask.

Every structure must have a role (target, organ of the OpenKBP set, or background, which is not
an input): a structure is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume
from sparsert.masks import fill_holes_per_slice, largest_component
from sparsert.metrics.dose import OPENKBP_ORGANS
from sparsert.preprocessing.ct import ct_channels, ct_to_hu
from sparsert.roles import StructureRole, highest_prescription, structure_roles

ORGANS = OPENKBP_ORGANS
CT_CHANNELS = 2
TARGET_CHANNEL = CT_CHANNELS
ORGAN_CHANNELS = slice(TARGET_CHANNEL + 1, TARGET_CHANNEL + 1 + len(ORGANS))
BODY_CHANNEL = TARGET_CHANNEL + 1 + len(ORGANS)
N_CHANNELS = BODY_CHANNEL + 1

_BODY_HU = -400.0


@dataclass
class DoseInputs:
    """Network channels (C, D, H, W) float32 on the CT grid, and what is needed to read the output."""

    channels: np.ndarray
    body: np.ndarray  # bool, where dose may be deposited
    ct_body: np.ndarray  # bool, the patient's body found from the CT (whatever body mask was given)
    highest_gy: float  # the network predicts dose / highest_gy
    roles: dict[str, StructureRole]

    @property
    def target_mask(self) -> np.ndarray:
        return self.channels[TARGET_CHANNEL] > 0

    @property
    def organ_mask(self) -> np.ndarray:
        return self.channels[ORGAN_CHANNELS].max(0) > 0


def automatic_body(ct_hu: np.ndarray) -> np.ndarray:
    """The patient's body from a CT in HU: the largest connected region above -400 HU, holes filled
    slice by slice (air in the airway and sinuses is inside the body)."""
    above = ct_hu > _BODY_HU
    if not above.any():
        raise InputError("the CT has no voxel above -400 HU: no body found (is it a CT in Hounsfield units?)")
    return fill_holes_per_slice(largest_component(above))


def dose_inputs(
    ct: Volume,
    structures: Segmentation,
    body: Volume | None = None,
    roles: Mapping[str, StructureRole] | None = None,
    prescriptions: Mapping[str, float] | None = None,
) -> DoseInputs:
    """The input channels of one case; InputError for anything that would make the dose meaningless.

    ``roles`` override the roles guessed from names and ``prescriptions`` ({name: Gy}) make
    structures targets (see :mod:`sparsert.roles`). ``body`` defaults to :func:`automatic_body`.
    """
    geometry = ct.geometry
    structures.require_grid(geometry, "structures")
    if body is not None and not body.geometry.matches(geometry):
        raise InputError(f"body mask is on a different grid ({body.geometry.describe()}) than the CT ({geometry.describe()})")
    resolved = checked_roles(structures.names, roles, prescriptions)
    hu = ct_to_hu(ct.array)
    ct_body = automatic_body(hu)
    body_mask = body.array > 0 if body is not None else ct_body
    if not body_mask.any():
        raise InputError("the body mask is empty")

    used = [s for s in structures.segments if not resolved[s.name].is_background]
    empty = [s.name for s in used if not s.mask.any()]
    if empty:
        raise InputError(
            f"structure(s) {', '.join(empty)} are empty on the CT grid (drawn outside the image?); remove them or "
            "give them the background role in a roles file"
        )
    highest = highest_prescription(resolved)
    channels = np.concatenate([
        ct_channels(hu),
        structure_channels({s.name: s.mask for s in used}, resolved, geometry.shape),
        body_mask[None].astype(np.float32),
    ])
    return DoseInputs(channels=channels, body=body_mask, ct_body=ct_body, highest_gy=float(highest), roles=resolved)


def structure_channels(
    masks: Mapping[str, np.ndarray], roles: Mapping[str, StructureRole], shape: tuple[int, ...]
) -> np.ndarray:
    """The target channel and the organ channels (1 + len(ORGANS), *shape) of checked roles."""
    if not masks:
        return np.zeros((1 + len(ORGANS),) + tuple(shape), dtype=np.float32)
    names = list(masks)
    # Stacked as booleans: a float32 stack of every mask took more than half of this function's time.
    stack = torch.from_numpy(np.stack([np.asarray(masks[n], dtype=bool) for n in names]))
    return soft_structure_channels(stack, names, roles).numpy()


def soft_structure_channels(masks: torch.Tensor, names: list[str], roles: Mapping[str, StructureRole]) -> torch.Tensor:
    """:func:`structure_channels` of (K, *shape) masks in [0, 1] (or boolean) as a differentiable tensor: each
    target weighted by its prescription over the highest (max where targets overlap), organs merged by max.

    Binary masks give exactly the binary channels; soft ones (the completion network's probabilities
    in end-to-end training) let the dose loss reach the network that drew them.
    """
    highest = highest_prescription(roles)
    dtype = masks.dtype if masks.is_floating_point() else torch.float32
    channels = [masks.new_zeros(masks.shape[1:], dtype=dtype) for _ in range(1 + len(ORGANS))]
    for k, name in enumerate(names):
        role = roles[name]
        if role.is_target:
            channels[0] = torch.maximum(channels[0], masks[k] * (role.prescription_gy / highest))
        elif not role.is_background:
            c = 1 + ORGANS.index(role.organ)
            channels[c] = torch.maximum(channels[c], masks[k])
    return torch.stack(channels)


def checked_roles(
    names: list[str],
    roles: Mapping[str, StructureRole] | None = None,
    prescriptions: Mapping[str, float] | None = None,
) -> dict[str, StructureRole]:
    """Roles of ``names`` (see :func:`sparsert.roles.structure_roles`), refusing what the model cannot use."""
    resolved = structure_roles(names, roles, prescriptions)
    _check_roles(resolved)
    return resolved


def _check_roles(roles: Mapping[str, StructureRole]) -> None:
    targets = [n for n, r in roles.items() if r.is_target]
    if not targets:
        raise InputError(
            f"no target among the structures ({', '.join(roles) or 'none'}): name targets PTV<Gy> (e.g. PTV70), "
            "or give --prescription NAME=GY or a roles file"
        )
    unprescribed = [n for n in targets if roles[n].prescription_gy is None]
    if unprescribed:
        raise InputError(
            f"target(s) {', '.join(unprescribed)} have no prescription: give --prescription NAME=GY or "
            "prescription_gy in a roles file"
        )
    unknown = [n for n, r in roles.items() if r.role == "organ" and r.organ not in ORGANS]
    if unknown:
        raise InputError(
            f"structure(s) {', '.join(unknown)} match no role the dose model knows (targets PTV<Gy>; organs "
            f"{', '.join(ORGANS)} and their usual spellings). Map each in a roles file, e.g. "
            f'{{"{unknown[0]}": {{"role": "organ", "organ": "Larynx"}}}}, or exclude it with {{"role": "background"}}'
        )

"""Structure roles in a plan: a target with its prescription, an organ at risk, or the background.

Roles are guessed from segment names (``PTV70`` is a target prescribed 70 Gy, ``Background`` is
the background scribble, everything else an organ) and can be overridden from a JSON file::

    {"CTV_high": {"role": "target", "prescription_gy": 70}, "Body": {"role": "background"}}

and from ``NAME=GY`` prescriptions (which make the structure a target). Organs are also recognised
as one of the OpenKBP organs when their name is a common spelling of it (``Parotid_R``,
``Spinal Cord``, ``brain_stem``...); a roles entry ``{"role": "organ", "organ": "Larynx"}`` maps
any other name. Light on purpose: no
torch, no VTK, so that the dose scene and the Slicer modules can use it without the models.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sparsert.errors import InputError
from sparsert.io.segmentation import BACKGROUND
from sparsert.metrics.dose import target_prescriptions

TARGET = "target"
ORGAN = "organ"
BACKGROUND_ROLE = "background"
ROLES = (TARGET, ORGAN, BACKGROUND_ROLE)

_TARGET = re.compile(r"^(PTV|CTV|GTV|ITV)", re.IGNORECASE)

# Spellings of the OpenKBP organs, compared after lower-casing and dropping everything but letters
# and digits, so "Parotid_R", "R Parotid" and "parotid-right" all meet.
ORGAN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "Brainstem": ("brainstem", "brainstemprv", "stem"),
    "SpinalCord": ("spinalcord", "cord", "spinalcanal", "myelon"),
    "RightParotid": ("rightparotid", "parotidright", "parotidr", "rparotid", "parotidrt", "rtparotid", "parotiddx"),
    "LeftParotid": ("leftparotid", "parotidleft", "parotidl", "lparotid", "parotidlt", "ltparotid", "parotidsin"),
    "Esophagus": ("esophagus", "oesophagus", "esophagusupper", "esoph"),
    "Larynx": ("larynx", "glotticlarynx", "larynxsg", "glottis"),
    "Mandible": ("mandible", "jaw", "bonemandible", "mandibula"),
}
_ORGAN_LOOKUP = {spelling: organ for organ, spellings in ORGAN_SYNONYMS.items() for spelling in spellings}


def canonical_organ(name: str) -> str | None:
    """The OpenKBP organ a structure name spells (``Parotid_R`` -> ``RightParotid``), or None."""
    return _ORGAN_LOOKUP.get(re.sub(r"[^a-z0-9]", "", name.lower()))


def is_target(name: str) -> bool:
    """Whether a structure name denotes a treatment target (PTV, CTV, GTV, ITV prefixes)."""
    return bool(_TARGET.match(name))


@dataclass(frozen=True)
class StructureRole:
    """What a structure is for; only targets carry a prescription (Gy), and it may be unknown (None)."""

    role: str
    prescription_gy: float | None = None
    organ: str | None = None  # the OpenKBP organ an organ stands for, when known

    @property
    def is_target(self) -> bool:
        return self.role == TARGET

    @property
    def is_background(self) -> bool:
        return self.role == BACKGROUND_ROLE


def guess_role(name: str) -> StructureRole:
    """The role a structure name suggests (see the module notes)."""
    if name.strip().lower() == BACKGROUND:
        return StructureRole(BACKGROUND_ROLE)
    if is_target(name):
        return StructureRole(TARGET, target_prescriptions([name]).get(name))
    return StructureRole(ORGAN, organ=canonical_organ(name))


def structure_roles(
    names: Iterable[str],
    overrides: Mapping[str, StructureRole] | None = None,
    prescriptions: Mapping[str, float] | None = None,
) -> dict[str, StructureRole]:
    """The role of every structure in ``names``: guessed, then ``overrides``, then ``prescriptions``.

    Names in ``overrides`` and ``prescriptions`` must be among ``names``; a prescription turns
    its structure into a target.
    """
    names = list(names)
    roles = {name: guess_role(name) for name in names}
    for name, role in (overrides or {}).items():
        if name not in roles:
            known = ", ".join(names) or "none"
            raise InputError(f"role given for '{name}', which is not among the structures ({known})")
        roles[name] = role
    if prescriptions:
        # Validates the names and values; only the explicitly given ones are applied here.
        checked = target_prescriptions(names, prescriptions)
        for name in prescriptions:
            roles[name] = StructureRole(TARGET, checked[name])
    return roles


def read_roles(path: str | Path) -> dict[str, StructureRole]:
    """Role overrides from a JSON file ``{"name": {"role": ..., "prescription_gy": ..., "organ": ...}}``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: roles file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object mapping structure names to roles")
    return {str(name): _role_entry(entry, f"{path}: '{name}'") for name, entry in data.items()}


def role_from_fields(name: str, role: str, prescription: str = "", organ: str = "") -> StructureRole:
    """A role from the texts of a roles table row (ScribbleDose's panel); fields that do not apply to
    ``role`` (a prescription of an organ, an organ of a target) are ignored, blank ones are absent."""
    entry: dict[str, object] = {"role": role}
    if role == TARGET and prescription.strip():
        try:
            entry["prescription_gy"] = float(prescription)
        except ValueError:
            raise InputError(f"'{name}': the prescription must be a dose in Gy, got {prescription!r}") from None
    if role == ORGAN and organ:
        entry["organ"] = organ
    return _role_entry(entry, f"'{name}'")


def highest_prescription(roles: Mapping[str, StructureRole]) -> float | None:
    """The highest target prescription (Gy), or None when no target has one."""
    doses = [r.prescription_gy for r in roles.values() if r.is_target and r.prescription_gy is not None]
    return max(doses) if doses else None


def _role_entry(entry, where: str) -> StructureRole:
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected an object such as {{\"role\": \"target\", \"prescription_gy\": 70}}")
    unknown = sorted(set(entry) - {"role", "prescription_gy", "organ"})
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: role, prescription_gy, organ)")
    role = entry.get("role")
    if role not in ROLES:
        raise InputError(f"{where}: role must be one of {', '.join(ROLES)}, got {role!r}")
    organ = entry.get("organ")
    if organ is not None:
        if role != ORGAN:
            raise InputError(f"{where}: only organs take an 'organ' (role is {role})")
        if organ not in ORGAN_SYNONYMS:
            raise InputError(f"{where}: organ must be one of {', '.join(ORGAN_SYNONYMS)}, got {organ!r}")
        return StructureRole(ORGAN, organ=organ)
    gy = entry.get("prescription_gy")
    if gy is None:
        return StructureRole(role)
    if role != TARGET:
        raise InputError(f"{where}: only targets take a prescription_gy (role is {role})")
    if isinstance(gy, bool) or not isinstance(gy, (int, float)) or not math.isfinite(gy) or gy <= 0:
        raise InputError(f"{where}: prescription_gy must be a positive number, got {gy!r}")
    return StructureRole(TARGET, float(gy))

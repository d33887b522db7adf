"""Structure roles: guessed from names, overridden by roles.json and prescriptions."""

from __future__ import annotations

import json

import pytest

from sparsert.completion.contract import is_target as contract_is_target
from sparsert.errors import InputError
from sparsert.roles import (
    BACKGROUND_ROLE,
    ORGAN,
    TARGET,
    StructureRole,
    guess_role,
    highest_prescription,
    is_target,
    read_roles,
    role_from_fields,
    structure_roles,
)


@pytest.mark.parametrize(
    "name, role",
    [
        ("PTV70", StructureRole(TARGET, 70.0)),
        ("ptv_56", StructureRole(TARGET, 56.0)),
        ("PTV 59.4", StructureRole(TARGET, 59.4)),
        ("CTV_high", StructureRole(TARGET, None)),
        ("GTVp", StructureRole(TARGET, None)),
        ("Background", StructureRole(BACKGROUND_ROLE)),
        ("background ", StructureRole(BACKGROUND_ROLE)),
        ("LeftParotid", StructureRole(ORGAN, organ="LeftParotid")),
        ("Parotid_L", StructureRole(ORGAN, organ="LeftParotid")),
        ("Spinal Cord", StructureRole(ORGAN, organ="SpinalCord")),
        ("Spinal_PRV", StructureRole(ORGAN)),
    ],
)
def test_roles_are_guessed_from_names(name, role):
    assert guess_role(name) == role


def test_completion_uses_the_same_target_rule():
    assert contract_is_target is is_target


def test_overrides_then_prescriptions_win_over_the_names():
    names = ["PTV70", "CTV_high", "Body", "Esophagus"]
    roles = structure_roles(
        names,
        overrides={"Body": StructureRole(BACKGROUND_ROLE), "PTV70": StructureRole(TARGET, 66.0)},
        prescriptions={"CTV_high": 70, "PTV70": 69.96},
    )
    assert roles == {
        "PTV70": StructureRole(TARGET, 69.96),
        "CTV_high": StructureRole(TARGET, 70.0),
        "Body": StructureRole(BACKGROUND_ROLE),
        "Esophagus": StructureRole(ORGAN, organ="Esophagus"),
    }
    assert highest_prescription(roles) == 70.0
    assert highest_prescription({"Esophagus": StructureRole(ORGAN), "GTV": StructureRole(TARGET)}) is None


def test_unknown_names_are_refused():
    with pytest.raises(InputError, match="role given for 'Lung'.*PTV70, Cord"):
        structure_roles(["PTV70", "Cord"], overrides={"Lung": StructureRole(ORGAN)})
    with pytest.raises(InputError, match="prescription given for 'PTV60'"):
        structure_roles(["PTV70"], prescriptions={"PTV60": 60})
    with pytest.raises(InputError, match="prescription of 'PTV70' must be a positive number"):
        structure_roles(["PTV70"], prescriptions={"PTV70": 0})


def test_roles_file_is_read_and_checked(tmp_path):
    good = tmp_path / "roles.json"
    good.write_text(json.dumps({
        "CTV": {"role": "target", "prescription_gy": 60}, "Body": {"role": "background"},
        "Cord_PRV": {"role": "organ", "organ": "SpinalCord"},
    }))
    assert read_roles(good) == {
        "CTV": StructureRole(TARGET, 60.0), "Body": StructureRole(BACKGROUND_ROLE),
        "Cord_PRV": StructureRole(ORGAN, organ="SpinalCord"),
    }

    cases = {
        '{"Cord": {"role": "oar"}}': "'Cord': role must be one of target, organ, background",
        '{"Cord": {"role": "organ", "prescription_gy": 50}}': "'Cord': only targets take a prescription_gy",
        '{"PTV": {"role": "target", "prescription_gy": -1}}': "'PTV': prescription_gy must be a positive number",
        '{"PTV": {"role": "target", "dose": 70}}': "'PTV': unknown key\\(s\\) dose",
        '{"X": {"role": "organ", "organ": "Lung"}}': "'X': organ must be one of Brainstem, SpinalCord",
        '{"X": {"role": "target", "organ": "Larynx"}}': "'X': only organs take an 'organ'",
        '{"PTV": "target"}': "'PTV': expected an object",
        '["PTV"]': "expected a JSON object",
        "{PTV: target}": "not valid JSON",
    }
    for index, (text, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{index}.json"
        bad.write_text(text)
        with pytest.raises(InputError, match=f"bad{index}.json: .*{message}|bad{index}.json: {message}"):
            read_roles(bad)
    with pytest.raises(InputError, match="missing.json: roles file not found"):
        read_roles(tmp_path / "missing.json")


def test_roles_table_rows_become_roles():
    assert role_from_fields("CTV_high", "target", " 66 ", "Larynx") == StructureRole("target", 66.0)
    assert role_from_fields("Cord PRV", "organ", "70", "SpinalCord") == StructureRole("organ", organ="SpinalCord")
    assert role_from_fields("Body", "background", "70", "Larynx") == StructureRole("background")
    assert role_from_fields("PTV", "target", "") == StructureRole("target")
    with pytest.raises(InputError, match="'PTV': the prescription must be a dose in Gy, got 'seventy'"):
        role_from_fields("PTV", "target", "seventy")
    with pytest.raises(InputError, match="'PTV': prescription_gy must be a positive number"):
        role_from_fields("PTV", "target", "-5")
    with pytest.raises(InputError, match="role must be one of"):
        role_from_fields("X", "tumour")

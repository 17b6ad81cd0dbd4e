"""The registry, read from the proto descriptors, is exactly the catalogue."""

import json
import subprocess

import pytest
import yaml

from agent.errors import InvalidCall
from tests.conftest import FIXTURES, cli, cli_env

RISK_DEFAULT = {"level": ["normal"]}


def catalogue_as_registry_json() -> list[dict]:
    """The spec fixture (a copy of the product catalogue) in the registry's JSON shape."""
    catalogue = yaml.safe_load((FIXTURES / "vehicle-functions.yaml").read_text())
    out = []
    for service, functions in catalogue["services"].items():
        for fn in functions:
            risk = fn.get("risk")
            out.append({
                "name": fn["name"],
                "service": service,
                "args": {name: dict(arg) for name, arg in fn["args"].items()},
                "risk": {**risk} if risk else RISK_DEFAULT,
            })
    return out


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True)


def test_registry_matches_catalogue_exactly(registry):
    expected = catalogue_as_registry_json()
    actual = registry.to_json()
    assert [f["name"] for f in actual] == [f["name"] for f in expected]
    for want, got in zip(expected, actual):
        # canonical JSON also tells 16 from 16.0: int arguments keep int bounds
        assert canonical(got) == canonical(want), want["name"]


def test_functions_json_cli_matches_catalogue():
    out = subprocess.run(cli("functions", "--json"), capture_output=True, text=True, env=cli_env(), check=True)
    assert canonical(json.loads(out.stdout)) == canonical(catalogue_as_registry_json())


def test_thirty_four_functions_in_eight_services(registry):
    assert len(registry) == 34
    assert registry.services == ("Climate", "Seats", "Lighting", "Body", "Media", "Navigation", "Phone", "Driving")


def test_complete_fills_defaults_and_refuses_bad_calls(registry):
    heat = registry.get("set_seat_heating_intensity")
    assert heat.complete({"level": 3}) == {"seat": "driver", "level": 3}
    with pytest.raises(InvalidCall, match="above the maximum 3"):
        heat.complete({"level": 9})
    with pytest.raises(InvalidCall, match="below the minimum 0"):
        heat.complete({"level": -1})
    with pytest.raises(InvalidCall, match="needs argument 'level'"):
        heat.complete({})
    with pytest.raises(InvalidCall, match="no argument 'colour'"):
        heat.complete({"level": 1, "colour": "red"})
    with pytest.raises(InvalidCall, match="not one of"):
        heat.complete({"level": 1, "seat": "roof"})
    with pytest.raises(InvalidCall, match="whole number"):
        heat.complete({"level": 1.5})
    with pytest.raises(InvalidCall, match="no function"):
        registry.get("open_hood")


def test_number_steps_and_string_lengths(registry):
    temp = registry.get("set_cabin_temperature")
    assert temp.complete({"celsius": 23.5})["celsius"] == 23.5
    with pytest.raises(InvalidCall, match="multiple of 0.5"):
        temp.complete({"celsius": 23.3})
    radio = registry.get("tune_radio")
    assert radio.complete({"frequency_mhz": 101.1})["frequency_mhz"] == pytest.approx(101.1)
    call = registry.get("call_contact")
    with pytest.raises(InvalidCall, match="at most 40"):
        call.complete({"name": "x" * 41})
    with pytest.raises(InvalidCall, match="empty"):
        call.complete({"name": "  "})


def test_risk_applies_only_when_condition_holds(registry):
    lock = registry.get("set_door_lock")
    assert lock.risk.applies({"locked": False}) == ("parked_only", "confirm")
    assert lock.risk.applies({"locked": True}) == ("normal",)
    assert registry.get("set_fan_speed").risk.applies({"level": 3}) == ("normal",)


def test_registry_hash_is_stable_and_content_sensitive(registry):
    assert registry.sha256() == registry.sha256()
    from agent.registry import Registry

    assert Registry(registry.functions[:-1]).sha256() != registry.sha256()

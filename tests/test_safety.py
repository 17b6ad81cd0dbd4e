"""The safety policy on its own: resolution of symbolic values, range, state, speed and confirmation."""

import pytest

from agent.decoding import Call
from agent.errors import PolicyRefusal
from agent.safety import approve
from agent.vehicle import VehicleState


def state(speed=0.0, **entries):
    functions = {
        "set_volume": {"level": 10},
        "set_cabin_temperature[zone=driver]": {"celsius": 21.0},
        "set_cabin_temperature[zone=passenger]": {"celsius": 21.0},
        "set_cabin_temperature[zone=rear]": {"celsius": 29.5},
    }
    functions.update(entries)
    return VehicleState(speed, functions, ())


def test_defaults_and_symbolic_values_are_filled(registry):
    approved = approve(registry, [Call("set_seat_heating_intensity", {"level": "on"}),
                                  Call("set_fan_speed", {"level": "max"}),
                                  Call("adjust_volume", {"delta": "down"}),
                                  Call("set_sunroof_position", {"open_percent": "min"})], state())
    assert approved.calls == (
        ("set_seat_heating_intensity", {"seat": "driver", "level": 2}),
        ("set_fan_speed", {"level": 7}),
        ("adjust_volume", {"delta": -2}),
        ("set_sunroof_position", {"open_percent": 0}),
    )
    assert not approved.confirm


def test_relative_request_is_checked_against_current_state(registry):
    with pytest.raises(PolicyRefusal, match="would take set_volume to 32"):
        approve(registry, [Call("adjust_volume", {"delta": "up"})], state(set_volume={"level": 30}))
    with pytest.raises(PolicyRefusal, match=r"zone rear\) to 30.5"):
        approve(registry, [Call("adjust_cabin_temperature", {"delta_celsius": 1.0})], state())
    approved = approve(registry, [Call("adjust_cabin_temperature", {"zone": "driver", "delta_celsius": 1.0})], state())
    assert approved.calls == (("adjust_cabin_temperature", {"zone": "driver", "delta_celsius": 1.0}),)


@pytest.mark.parametrize("call,reason", [
    (Call("set_cabin_temperature", {"celsius": 45.0}), "above the maximum 30"),
    (Call("set_seat_heating_intensity", {"level": 5}), "above the maximum 3"),
    (Call("set_wiper_mode", {"mode": "turbo"}), "not one of"),
    (Call("navigate_to", {"destination": "x" * 90}), "at most 80"),
    (Call("set_wiper_mode", {"mode": "on"}), "not one of"),
    (Call("set_air_conditioning", {}), "needs argument 'on'"),
    (Call("set_cabin_temperature", {"celsius": "on"}), "cannot be 'on'"),
])
def test_bad_values_are_refused_never_clamped(registry, call, reason):
    with pytest.raises(PolicyRefusal, match=reason):
        approve(registry, [call], state())


def test_parked_only_while_moving(registry):
    with pytest.raises(PolicyRefusal, match="only allowed while the car is parked"):
        approve(registry, [Call("set_trunk", {"open": True})], state(speed=50))
    assert approve(registry, [Call("set_trunk", {"open": False})], state(speed=50)).calls
    assert approve(registry, [Call("set_trunk", {"open": True})], state(speed=0)).calls


def test_unlock_needs_confirmation_lock_does_not(registry):
    assert approve(registry, [Call("set_door_lock", {"locked": False})], state()).confirm
    assert not approve(registry, [Call("set_door_lock", {"locked": True})], state()).confirm
    with pytest.raises(PolicyRefusal):
        approve(registry, [Call("set_door_lock", {"locked": False})], state(speed=30))


def test_one_refusal_refuses_the_whole_command(registry):
    with pytest.raises(PolicyRefusal, match="above the maximum"):
        approve(registry, [Call("set_fan_speed", {"level": 3}), Call("set_seat_heating_intensity", {"level": 9})], state())

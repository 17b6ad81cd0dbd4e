"""The command pipeline against the real simulator, with the model's output scripted.

The model is the edge here: these tests fix what it decodes and check what
the car receives, so the policy and dispatch rules are tested exactly.
"""

import pytest

from agent.confirmations import Confirmations
from agent.decoding import Call
from agent.dispatch import Dispatcher
from agent.evaluation import Case, run_cases, summary
from agent.handler import CommandHandler, Outcome
from agent.inference import Decoded
from tests.conftest import settings_for


class ScriptedModel:
    def __init__(self, script):
        self.script = script

    def __call__(self, text):
        return Decoded(text, [Call(f, dict(a)) for f, a in self.script.get(text, [])], 3, 1.0, 2.0)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make_handler(registry, sim, vehicle, clock):
    dispatchers = []

    def make(script, decode=None):
        d = Dispatcher(registry, settings_for(sim))
        dispatchers.append(d)
        return CommandHandler(decode or ScriptedModel(script), registry, d, vehicle, Confirmations(10.0, clock))

    yield make
    for d in dispatchers:
        d.close()


def received(vehicle):
    return [(c.function, c.args) for c in vehicle.calls()]


def test_dispatched_calls_reach_the_car(make_handler, vehicle):
    handler = make_handler({"seat heat on": [("set_seat_heating_intensity", {"level": "on"})]})
    result = handler.handle("seat heat on")
    assert result.outcome == Outcome.DISPATCHED and result.dispatched
    assert received(vehicle) == [("set_seat_heating_intensity", {"seat": "driver", "level": 2})]
    assert "seat heating intensity" in result.reply


def test_not_a_command_sends_nothing(make_handler, vehicle):
    result = make_handler({}).handle("tell me a joke")
    assert result.outcome == Outcome.NOT_A_COMMAND and not result.dispatched
    assert received(vehicle) == []


def test_an_unsure_model_changes_nothing_and_asks_to_rephrase(make_handler, vehicle):
    unsure = Decoded("retract the mirrors", [], 6, 1.0, 2.0, abstained=True,
                     proposed=[Call("set_mirrors_folded", {"folded": False})], argument_confidence=0.4)
    result = make_handler({}, decode=lambda text: unsure).handle("retract the mirrors")
    assert result.outcome == Outcome.NOT_A_COMMAND and not result.dispatched and result.calls == []
    assert "another way" in result.reply
    assert received(vehicle) == []


def test_one_refused_call_sends_none(make_handler, vehicle):
    handler = make_handler({"x": [("set_fan_speed", {"level": 3}), ("set_cabin_temperature", {"celsius": 45.0})]})
    result = handler.handle("x")
    assert result.outcome == Outcome.REFUSED and "above the maximum 30" in result.reply
    assert received(vehicle) == []


def test_confirmation_yes_dispatches(make_handler, vehicle, clock):
    handler = make_handler({"unlock": [("set_door_lock", {"locked": False})]})
    assert handler.handle("unlock", "s1").outcome == Outcome.NEEDS_CONFIRMATION
    assert received(vehicle) == []
    clock.now += 9.5
    assert handler.handle("yes", "s1").outcome == Outcome.DISPATCHED
    assert received(vehicle) == [("set_door_lock", {"locked": False})]


def test_confirmation_no_timeout_and_other_session(make_handler, vehicle, clock):
    handler = make_handler({"unlock": [("set_door_lock", {"locked": False})]})
    handler.handle("unlock", "s1")
    assert handler.handle("no", "s1").outcome == Outcome.CANCELLED
    handler.handle("unlock", "s1")
    assert handler.confirm("s2", True).outcome == Outcome.CANCELLED  # another session's yes does nothing
    clock.now += 10.5
    assert handler.handle("yes", "s1").outcome != Outcome.DISPATCHED
    assert received(vehicle) == []


def test_car_moving_before_the_yes_refuses(make_handler, vehicle):
    handler = make_handler({"unlock": [("set_door_lock", {"locked": False})]})
    handler.handle("unlock", "s1")
    vehicle.set_speed(20)
    result = handler.handle("yes", "s1")
    assert result.outcome == Outcome.REFUSED and "parked" in result.reply
    assert received(vehicle) == []


def test_service_down_gives_clear_reply_and_no_replay(make_handler, vehicle):
    handler = make_handler({"fan": [("set_fan_speed", {"level": 4})]})
    vehicle.set_service_available("Climate", False)
    result = handler.handle("fan")
    assert result.outcome == Outcome.VEHICLE_ERROR
    assert "vehicle service Climate unavailable" in result.reply
    vehicle.set_service_available("Climate", True)
    make_handler({}).handle("hello")
    assert received(vehicle) == []  # nothing queued and sent later


def test_eval_counts_false_and_wrong_actuations(registry, make_handler, vehicle):
    handler = make_handler({
        "fan five": [("set_fan_speed", {"level": 5})],
        "hot tub": [("set_fan_speed", {"level": 1})],          # a false actuation
        "volume": [("set_volume", {"level": 12})],             # a wrong actuation: 15 expected
        "unlock": [("set_door_lock", {"locked": False})],
    })
    cases = [
        Case("fan five", "single", (("set_fan_speed", {"level": 5}),)),
        Case("hot tub", "negative", ()),
        Case("volume", "single", (("set_volume", {"level": 15}),)),
        Case("unlock", "single", (("set_door_lock", {"locked": False}),), followup=("yes",)),
        Case("unlock", "unsafe", (), speed_kmh=80),
    ]
    report = summary(run_cases(handler, vehicle, registry, cases))
    assert report["cases"] == 5 and report["passed"] == 3
    assert report["false_actuations"] == 1 and report["wrong_actuations"] == 2
    assert report["by_kind"]["negative"] == {"cases": 1, "passed": 0}
    assert report["by_kind"]["unsafe"] == {"cases": 1, "passed": 1}

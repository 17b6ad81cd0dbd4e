"""A short demo: start the simulator, dispatch a few calls, show what the car did.

`make run` runs it until the daemon (issue: the agent daemon) takes its place.
"""

from __future__ import annotations

import json

from agent.config import VehicleSettings
from agent.dispatch import Dispatcher, open_channel
from agent.errors import AgentError
from agent.registry import load_registry
from agent.sim.server import start_simulator
from agent.transport import parse_uri
from agent.vehicle import VehicleClient

DEMO_CALLS = [
    ("set_seat_heating_intensity", {"level": 3}),
    ("set_cabin_temperature", {"zone": "driver", "celsius": 22.5}),
    ("adjust_volume", {"delta": -2}),
    ("set_seat_heating_intensity", {"level": 9}),  # refused: out of range
]


def main() -> int:
    registry = load_registry()
    sim = start_simulator(registry, parse_uri("tcp://127.0.0.1:0"))
    settings = VehicleSettings(uri=str(sim.endpoint))
    print(f"vehicle simulator on {sim.endpoint}")
    try:
        with Dispatcher(registry, settings) as dispatcher:
            for function, args in DEMO_CALLS:
                try:
                    result = dispatcher.dispatch(function, args)
                    print(f"  {function} {json.dumps(args)} -> {json.dumps(result.state)}")
                except AgentError as exc:
                    print(f"  {function} {json.dumps(args)} -> refused: {exc}")
        channel = open_channel(settings)
        calls = VehicleClient(channel, settings).calls()
        channel.close()
        print(f"the car received {len(calls)} calls: {[c.function for c in calls]}")
    finally:
        sim.stop(grace=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

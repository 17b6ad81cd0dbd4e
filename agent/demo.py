"""`make run`: the simulator and the daemon, a short demo conversation, then the daemon stays up.

Talks to both exactly as a head unit would: the Agent API over its unix
socket, the vehicle services over gRPC. Ctrl-C stops everything.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import grpc

from agent.config import AgentConfig
from agent.dispatch import open_channel
from agent.gen.agent.v1 import agent_pb2, agent_pb2_grpc
from agent.vehicle import VehicleClient

CONVERSATION = [
    "turn my seat heating to three",
    "set the temperature to 22.5 degrees on the passenger side",
    "make it a bit louder",
    "set the temperature to 45 degrees",   # refused: out of range
    "tell me a joke",                       # not a vehicle command
    "unlock the doors",                     # needs a confirmation
    "yes",
]


def _start(args: list[str], pattern: str, what: str, timeout: float = 180) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if re.search(pattern, line or ""):
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"{what} did not start (exit code {proc.returncode})")
    proc.kill()
    raise SystemExit(f"{what} did not start within {timeout:.0f} s")


def _changes(before: dict, after: dict) -> list[str]:
    return [f"{key}: {json.dumps(before.get(key))} -> {json.dumps(value)}"
            for key, value in after.items() if before.get(key) != value]


def main() -> int:
    config = AgentConfig()
    sim = _start(["sim"], r"listening on", "the vehicle simulator")
    daemon = None
    try:
        daemon = _start(["serve"], r"listening on", "the agent daemon")
        vehicle = VehicleClient(open_channel(config.vehicle), config.vehicle)
        target = config.daemon.listen
        with grpc.insecure_channel(target) as channel:
            agent = agent_pb2_grpc.AgentStub(channel)
            for text in CONVERSATION:
                before = vehicle.state().functions
                reply = agent.Command(agent_pb2.CommandRequest(text=text, session_id="demo"), timeout=30)
                after = vehicle.state().functions
                print(f"\ndriver> {text}")
                for call in reply.calls:
                    print(f"  decoded: {call.function} {call.args_json}")
                print(f"  agent> {reply.reply}  ({reply.timing.total_ms:.0f} ms)")
                for change in _changes(before, after):
                    print(f"  car: {change}")
        print("\nThe daemon keeps running on", target)
        print('Try: .venv/bin/vehicle-agent ask "open the sunroof halfway"   (Ctrl-C stops everything)')
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        daemon.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in (daemon, sim):
            if proc and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

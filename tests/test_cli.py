"""The command line as a user runs it: real processes, real simulator."""

import json
import re
import signal
import subprocess
import time

import pytest

from agent.config import VehicleSettings
from agent.dispatch import open_channel
from agent.vehicle import VehicleClient
from tests.conftest import cli, cli_env


@pytest.fixture
def sim_process(tmp_path):
    record = tmp_path / "calls.jsonl"
    proc = subprocess.Popen(cli("sim", "--listen", "tcp://127.0.0.1:0", "--record", str(record)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    line = proc.stdout.readline()
    match = re.search(r"listening on (tcp://\S+)", line)
    assert match, f"no address printed: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
    yield proc, match.group(1), record
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run(*args, timeout=30):
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout)


def state_of(uri):
    settings = VehicleSettings(uri=uri)
    channel = open_channel(settings)
    try:
        return VehicleClient(channel, settings).state().functions
    finally:
        channel.close()


def test_call_changes_simulator_state_and_is_recorded(sim_process):
    proc, uri, record = sim_process
    out = run("call", "set_seat_heating_intensity", "level=3", "--vehicle", uri)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["args"] == {"seat": "driver", "level": 3}
    assert state_of(uri)["set_seat_heating_intensity[seat=driver]"] == {"level": 3}
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [(r["function"], r["args"]) for r in lines] == [("set_seat_heating_intensity", {"seat": "driver", "level": 3})]


@pytest.mark.parametrize("args,message", [
    (["set_seat_heating_intensity", "level=9"], "level 9 is above the maximum 3"),
    (["set_seat_heating_intensity", "level=hot"], "needs an integer"),
    (["set_seat_heating_intensity", "heat=2"], "no argument 'heat'"),
    (["set_seat_heating_intensity", "level"], "not key=value"),
    (["set_seat_heating_intensity"], "needs argument 'level'"),
    (["open_hood"], "no function 'open_hood'"),
    (["set_air_conditioning", "on=maybe"], "needs true or false"),
])
def test_bad_calls_exit_2_with_one_line_and_change_nothing(sim_process, args, message):
    proc, uri, record = sim_process
    before = state_of(uri)
    out = run("call", *args, "--vehicle", uri)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and message in out.stderr
    assert "Traceback" not in out.stderr
    assert state_of(uri) == before
    assert record.read_text() == ""


def test_call_with_simulator_stopped_fails_within_deadline(sim_process):
    proc, uri, record = sim_process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "stopped" in proc.stdout.read()
    started = time.monotonic()
    out = run("call", "set_seat_heating_intensity", "level=3", "--vehicle", uri, "--vehicle-deadline-s", "0.5")
    assert out.returncode == 1
    assert out.stderr.strip() == "error: vehicle service Seats unavailable"
    assert time.monotonic() - started < 10  # interpreter start-up included; the RPC part is bounded by 0.5 s


def test_sigint_stops_simulator_gracefully(sim_process):
    proc, uri, record = sim_process
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_functions_lists_every_function():
    out = run("functions")
    assert out.returncode == 0
    assert len(out.stdout.strip().splitlines()) == 34
    assert "set_door_lock" in out.stdout and "parked_only" in out.stdout


def test_bad_config_file_is_named(tmp_path):
    bad = tmp_path / "agent.yaml"
    bad.write_text("vehicle:\n  deadline_s: soon\n")
    out = run("--config", str(bad), "call", "set_fan_speed", "level=1")
    assert out.returncode == 2
    assert "'vehicle.deadline_s' must be a number" in out.stderr

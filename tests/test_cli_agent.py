"""`ask --local` and `eval --json` as a user runs them, with the tiny model and a real simulator."""

import json
import subprocess

from tests.conftest import cli, cli_env


def run(*args, timeout=120):
    return subprocess.run(cli(*args), capture_output=True, text=True, env=cli_env(), timeout=timeout)


def test_ask_local_prints_one_json_object(tiny_build, unix_sim):
    result, _ = tiny_build
    out = run("ask", "turn on the air conditioning", "--local", "--json", "--model", str(result.model),
              "--vehicle", str(unix_sim.endpoint), "--no-pinning-enabled")
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert set(reply) == {"text", "calls", "dispatched", "reply"}
    assert isinstance(reply["calls"], list) and isinstance(reply["dispatched"], bool)
    received = unix_sim.simulator.model.calls
    assert reply["dispatched"] == bool(received)


def test_eval_json_has_exactly_the_documented_keys(tiny_build, tmp_path):
    result, _ = tiny_build
    cases = tmp_path / "cases.jsonl"
    cases.write_text("\n".join(json.dumps(c) for c in [
        {"text": "set the fan to three", "kind": "single", "expect": [{"function": "set_fan_speed", "args": {"level": 3}}]},
        {"text": "what a lovely day", "kind": "negative", "expect": []},
        {"text": "open the trunk", "kind": "unsafe", "vehicle": {"speed_kmh": 60}, "expect": []},
    ]) + "\n")
    out = run("eval", str(cases), "--json", "--model", str(result.model), "--no-pinning-enabled")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report) >= {"cases", "passed", "accuracy", "by_kind", "false_actuations", "wrong_actuations", "latency_ms"}
    assert report["cases"] == 3 and set(report["latency_ms"]) == {"p50", "p95"}
    assert set(report["by_kind"]) == {"single", "negative", "unsafe"}
    assert report["by_kind"]["unsafe"]["cases"] == 1


def test_eval_refuses_a_malformed_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "kind": "weird", "expect": []}\n')
    out = run("eval", str(bad), "--json")
    assert out.returncode == 2
    assert "bad.jsonl:1" in out.stderr and "unknown kind" in out.stderr


def test_ask_without_daemon_fails_clearly(tmp_path):
    out = run("ask", "hello", "--listen", f"unix://{tmp_path}/none.sock")
    assert out.returncode == 1
    assert "the agent daemon is not running" in out.stderr

"""Configuration: defaults, YAML, flags, and a clear error naming the bad key."""

import argparse

import pytest

from agent.config import AgentConfig, add_flags, config_from_args, load_config
from agent.errors import ConfigError


def test_defaults_without_a_file():
    config = load_config()
    assert config == AgentConfig()
    assert config.vehicle.deadline_s == 1.0


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text("vehicle:\n  uri: unix:///run/car.sock\n  deadline_s: 0.25\n")
    config = load_config(path, {"vehicle.retry_idempotent": False})
    assert config.vehicle.uri == "unix:///run/car.sock"
    assert config.vehicle.deadline_s == 0.25
    assert config.vehicle.retry_idempotent is False


@pytest.mark.parametrize("text,message", [
    ("vehicle:\n  deadlin_s: 1\n", "unknown key 'vehicle.deadlin_s' (did you mean 'deadline_s'?)"),
    ("vehicel:\n  uri: tcp://a:1\n", "unknown section 'vehicel'"),
    ("vehicle:\n  deadline_s: -1\n", "'vehicle.deadline_s' must be above 0"),
    ("vehicle:\n  uri: http://car\n", "starts with unix:// or tcp://"),
    ("vehicle:\n  uri: tcp://car\n", "tcp://host:port"),
    ("vehicle:\n  retry_idempotent: perhaps\n", "'vehicle.retry_idempotent' must be true or false"),
    ("vehicle: [1, 2]\n", "section 'vehicle' must be a mapping"),
    ("- 1\n", "top level must be a mapping"),
    ("vehicle:\n  uri: [unclosed\n", "not valid YAML"),
    ("model:\n  min_confidence: 1.5\n", "'model.min_confidence' must be from 0"),
    ("model:\n  min_argument_confidence: -0.1\n", "'model.min_argument_confidence' must be from 0"),
    ("pinning:\n  cores: -1\n", "'pinning.cores' must be 0 or more"),
    ("daemon:\n  listen: ftp://x\n", "starts with unix:// or tcp://"),
])
def test_bad_config_names_the_problem(tmp_path, text, message):
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("/nonexistent/agent.yaml")


def test_every_setting_is_a_flag():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_flags(parser, "vehicle", "sim")
    args = parser.parse_args(["--vehicle", "tcp://127.0.0.1:9", "--vehicle-deadline-s", "2.5",
                              "--no-vehicle-retry-idempotent", "--listen", "unix:///tmp/s.sock"])
    config = config_from_args(args)
    assert config.vehicle.uri == "tcp://127.0.0.1:9"
    assert config.vehicle.deadline_s == 2.5
    assert config.vehicle.retry_idempotent is False
    assert config.sim.listen == "unix:///tmp/s.sock"

"""Shared fixtures: the registry and real simulators on a TCP port and a unix socket."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from agent.config import VehicleSettings
from agent.dispatch import Dispatcher, open_channel
from agent.registry import load_registry
from agent.sim.server import start_simulator
from agent.transport import parse_uri
from agent.vehicle import VehicleClient

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture
def sim(registry):
    running = start_simulator(registry, parse_uri("tcp://127.0.0.1:0"))
    yield running
    running.stop(grace=None)


@pytest.fixture
def unix_sim(registry, tmp_path):
    running = start_simulator(registry, parse_uri(f"unix://{tmp_path}/vehicle.sock"))
    yield running
    running.stop(grace=None)


def settings_for(running, deadline_s: float = 1.0) -> VehicleSettings:
    return VehicleSettings(uri=str(running.endpoint), deadline_s=deadline_s)


@pytest.fixture
def dispatcher(registry, sim):
    with Dispatcher(registry, settings_for(sim)) as d:
        yield d


@pytest.fixture
def vehicle(sim):
    settings = settings_for(sim)
    channel = open_channel(settings)
    yield VehicleClient(channel, settings)
    channel.close()


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


@pytest.fixture(scope="session")
def tiny_build(registry, tmp_path_factory):
    """The tiny recipe built once per test session (about a minute): a real GGUF for llama.cpp."""
    from agent.toolchain.build import build
    from agent.toolchain.recipe import load_recipe

    out = tmp_path_factory.mktemp("tiny")
    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    result = build(recipe, registry, REPO / "models" / "templates", out, progress=False)
    return result, recipe


def corrupt_copy(model: Path, directory: Path, offset: int = 4096) -> Path:
    """A copy of model with its manifest, then a few bytes overwritten: the manifest no longer matches."""
    import shutil

    from agent.manifest import manifest_path

    copy = directory / "corrupt.gguf"
    shutil.copy(model, copy)
    shutil.copy(manifest_path(model), manifest_path(copy))
    with open(copy, "r+b") as f:
        f.seek(offset)
        f.write(b"\x00corrupt\x00")
    return copy

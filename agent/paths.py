"""Where built models live: $VEHICLE_AGENT_HOME, else ~/.cache/vehicle-agent."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RECIPE = "default"


def home() -> Path:
    return Path(os.environ.get("VEHICLE_AGENT_HOME") or Path.home() / ".cache" / "vehicle-agent")


def models_dir() -> Path:
    return home() / "models"


def default_model() -> Path:
    return models_dir() / DEFAULT_RECIPE / f"{DEFAULT_RECIPE}.gguf"


def build_report(model: Path) -> Path:
    """The build report beside a model. A build writes it last, so a model without one is from a build
    that stopped part-way."""
    return model.parent / "build-report.json"

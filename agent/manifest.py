"""SHA-256 manifests beside model files: written by the toolchain, checked before every load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from agent.atomic import write_text
from agent.errors import ModelError


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(model: str | Path) -> Path:
    return Path(str(model) + ".sha256.json")


def write_manifest(model: str | Path) -> Path:
    model = Path(model)
    path = manifest_path(model)
    return write_text(path, json.dumps({"file": model.name, "sha256": sha256_of(model), "bytes": model.stat().st_size},
                                       indent=2) + "\n")


def verify(model: str | Path) -> str:
    """The model's SHA-256, after checking it against its manifest; ModelError otherwise."""
    model = Path(model)
    if not model.is_file():
        raise ModelError(f"no model file at {model}")
    path = manifest_path(model)
    try:
        expected = json.loads(path.read_text())["sha256"]
    except FileNotFoundError:
        raise ModelError(f"{model} has no manifest {path.name}; refusing an unverified model") from None
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"manifest {path} is malformed") from None
    actual = sha256_of(model)
    if actual != expected:
        raise ModelError(f"{model} is corrupt: SHA-256 {actual[:12]}... does not match its manifest ({expected[:12]}...)")
    return actual

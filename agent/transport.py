"""Addresses as URIs (`unix:///path`, `tcp://host:port`), turned into gRPC targets."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agent.errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def grpc_target(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def with_port(self, port: int) -> "Endpoint":
        return Endpoint(self.scheme, self.path, self.host, port)

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"tcp://{self.grpc_target}"


def parse_uri(uri: str) -> Endpoint:
    """An Endpoint from `unix:///absolute/path` or `tcp://host:port` (port 0: any free port)."""
    parts = urlsplit(uri)
    if parts.scheme == "unix":
        path = parts.path
        if parts.netloc or not path.startswith("/"):
            raise ConfigError(f"{uri!r}: a unix socket address is unix:///absolute/path")
        return Endpoint("unix", path=path)
    if parts.scheme == "tcp":
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ConfigError(f"{uri!r}: a TCP address is tcp://host:port")
        return Endpoint("tcp", host=parts.hostname, port=port)
    raise ConfigError(f"{uri!r}: an address starts with unix:// or tcp://")


def prepare_unix_socket(path: str) -> None:
    """Make the socket's directory and remove a stale socket left by a previous run (never a regular file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() and stat.S_ISSOCK(os.stat(p).st_mode):
        p.unlink()

"""Dispatch: a call {"function", "args"} becomes one RPC on the right vehicle service.

Every RPC has a deadline. An idempotent set_* call may be retried once within
that deadline when the service is unavailable; a relative adjust_* call is
never retried, and nothing is queued to be replayed later.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import grpc

from agent.config import VehicleSettings
from agent.errors import VehicleRejected, VehicleUnavailable
from agent.gen.vehicle.v1 import options_pb2
from agent.registry import Registry
from agent.transport import parse_uri

_RETRY_PAUSE_S = 0.05
_REJECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE}


@dataclass(frozen=True)
class Dispatched:
    function: str
    args: dict[str, Any]
    state: dict[str, Any]  # the state entries the call changed
    attempts: int
    elapsed_ms: float


def open_channel(settings: VehicleSettings) -> grpc.Channel:
    return grpc.insecure_channel(parse_uri(settings.uri).grpc_target)


class Dispatcher:
    """Sends complete, validated calls to the vehicle services over one channel."""

    def __init__(self, registry: Registry, settings: VehicleSettings, channel: grpc.Channel | None = None):
        self.registry = registry
        self.settings = settings
        self._own_channel = channel is None
        self.channel = channel or open_channel(settings)
        self._stubs = {
            spec.name: self.channel.unary_unary(
                spec.full_method,
                request_serializer=spec.request_class.SerializeToString,
                response_deserializer=options_pb2.CallReply.FromString,
            )
            for spec in registry
        }

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()

    def __enter__(self) -> "Dispatcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dispatch(self, function: str, args: dict[str, Any]) -> Dispatched:
        """Send one call; its arguments are completed and checked against the registry first."""
        spec = self.registry.get(function)
        args = spec.complete(args)
        request = spec.request_class(**args)
        stub = self._stubs[spec.name]
        started = time.monotonic()
        deadline = started + self.settings.deadline_s
        attempts_allowed = 2 if spec.idempotent and self.settings.retry_idempotent else 1
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise _Expired()
                reply = stub(request, timeout=remaining)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < attempts_allowed:
                    time.sleep(min(_RETRY_PAUSE_S, max(0.0, deadline - time.monotonic())))
                    continue
                raise _error(spec.service, spec.name, code, exc.details(), self.settings.deadline_s) from None
            except _Expired:
                raise _error(spec.service, spec.name, grpc.StatusCode.DEADLINE_EXCEEDED, "", self.settings.deadline_s) from None
            elapsed = (time.monotonic() - started) * 1000
            return Dispatched(spec.name, args, json.loads(reply.state_json or "{}"), attempt, elapsed)


class _Expired(Exception):
    pass


def _error(service: str, function: str, code: grpc.StatusCode, details: str, deadline_s: float) -> Exception:
    if code in _REJECTED:
        return VehicleRejected(f"vehicle service {service} refused {function}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return VehicleUnavailable(f"vehicle service {service} unavailable: no answer within {deadline_s:g} s")
    if code == grpc.StatusCode.UNAVAILABLE:
        return VehicleUnavailable(f"vehicle service {service} unavailable")
    return VehicleUnavailable(f"vehicle service {service} failed on {function}: {code.name.lower()} {details}".rstrip())

"""Client of the Vehicle service: speed and state, and the simulator's test hooks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import grpc

from agent.config import VehicleSettings
from agent.errors import VehicleRejected, VehicleUnavailable
from agent.gen.vehicle.v1 import state_pb2, state_pb2_grpc


@dataclass(frozen=True)
class VehicleState:
    speed_kmh: float
    functions: dict[str, dict[str, Any]]
    unavailable_services: tuple[str, ...]

    @classmethod
    def from_proto(cls, msg: state_pb2.VehicleState) -> "VehicleState":
        return cls(msg.speed_kmh, json.loads(msg.functions_json or "{}"), tuple(msg.unavailable_services))


@dataclass(frozen=True)
class RecordedCall:
    seq: int
    function: str
    args: dict[str, Any]


class VehicleClient:
    def __init__(self, channel: grpc.Channel, settings: VehicleSettings):
        self._stub = state_pb2_grpc.VehicleStub(channel)
        self._timeout = settings.deadline_s

    def _call(self, method: str, request) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise VehicleRejected(f"vehicle refused {method}: {exc.details()}") from None
            raise VehicleUnavailable(f"vehicle service Vehicle unavailable ({exc.code().name.lower()})") from None

    def state(self) -> VehicleState:
        return VehicleState.from_proto(self._call("GetState", state_pb2.GetStateRequest()))

    def set_speed(self, speed_kmh: float) -> VehicleState:
        return VehicleState.from_proto(self._call("SetSpeed", state_pb2.SetSpeedRequest(speed_kmh=speed_kmh)))

    def reset(self) -> VehicleState:
        return VehicleState.from_proto(self._call("Reset", state_pb2.ResetRequest()))

    def set_service_available(self, service: str, available: bool) -> VehicleState:
        request = state_pb2.SetServiceAvailableRequest(service=service, available=available)
        return VehicleState.from_proto(self._call("SetServiceAvailable", request))

    def calls(self, after_seq: int = 0) -> list[RecordedCall]:
        log = self._call("ListCalls", state_pb2.ListCallsRequest(after_seq=after_seq))
        return [RecordedCall(c.seq, c.function, json.loads(c.args_json)) for c in log.calls]

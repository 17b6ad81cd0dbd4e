"""The simulator's gRPC server: every vehicle service, the Vehicle service and grpc.health.v1."""

from __future__ import annotations

import json
import threading
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.errors import InvalidCall
from agent.gen.vehicle.v1 import options_pb2, state_pb2, state_pb2_grpc
from agent.registry import FunctionSpec, Registry
from agent.sim.state import CallRecord, VehicleModel
from agent.transport import Endpoint, prepare_unix_socket

PACKAGE = "vehicle.v1"


def request_args(request) -> dict[str, Any]:
    """The arguments a request carries: only the fields that are set."""
    return {fd.name: getattr(request, fd.name) for fd in request.DESCRIPTOR.fields if request.HasField(fd.name)}


class CallJournal:
    """Appends every accepted call as a JSON line, flushed at once so nothing is lost."""

    def __init__(self, path: str):
        self._file = open(path, "a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, record: CallRecord) -> None:
        if self._file is None:
            return
        line = json.dumps({"seq": record.seq, "function": record.function, "args": record.args, "unix_time": record.unix_time})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Simulator:
    """Serves the model over gRPC; one instance per server."""

    def __init__(self, registry: Registry, journal: CallJournal):
        self.registry = registry
        self.model = VehicleModel(registry)
        self.journal = journal
        self.health = health.HealthServicer()
        self._unavailable: set[str] = set()
        self._set_health()

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
        for spec in self.registry:
            by_service.setdefault(spec.service, {})[spec.method] = grpc.unary_unary_rpc_method_handler(
                self._function_handler(spec),
                request_deserializer=spec.request_class.FromString,
                response_serializer=options_pb2.CallReply.SerializeToString,
            )
        return [grpc.method_handlers_generic_handler(f"{PACKAGE}.{name}", methods) for name, methods in by_service.items()]

    def _function_handler(self, spec: FunctionSpec) -> Callable:
        def handle(request, context: grpc.ServicerContext):
            if spec.service in self._unavailable:
                context.abort(grpc.StatusCode.UNAVAILABLE, f"{spec.service} is down (simulated fault)")
            try:
                record, changed = self.model.apply(spec.name, request_args(request))
            except InvalidCall as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            self.journal.write(record)
            return options_pb2.CallReply(state_json=json.dumps(changed, sort_keys=True))

        return handle

    def state(self) -> state_pb2.VehicleState:
        return state_pb2.VehicleState(
            speed_kmh=self.model.speed_kmh,
            functions_json=json.dumps(self.model.snapshot(), sort_keys=True),
            unavailable_services=sorted(self._unavailable),
        )

    def set_service_available(self, service: str, available: bool) -> None:
        if service not in self.registry.services:
            raise InvalidCall(f"no vehicle service {service!r} (known: {', '.join(self.registry.services)})")
        (self._unavailable.discard if available else self._unavailable.add)(service)
        self._set_health()

    def reset(self) -> None:
        self.model.reset()
        self._unavailable.clear()
        self._set_health()

    def _set_health(self) -> None:
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", serving)
        for service in self.registry.services:
            self.health.set(f"{PACKAGE}.{service}", not_serving if service in self._unavailable else serving)


class VehicleServicer(state_pb2_grpc.VehicleServicer):
    def __init__(self, sim: Simulator):
        self.sim = sim

    def GetState(self, request, context):
        return self.sim.state()

    def SetSpeed(self, request, context):
        self._guard(context, self.sim.model.set_speed, request.speed_kmh)
        return self.sim.state()

    def ListCalls(self, request, context):
        records = [
            state_pb2.CallRecord(seq=c.seq, function=c.function, args_json=json.dumps(c.args, sort_keys=True), unix_time=c.unix_time)
            for c in self.sim.model.calls_after(request.after_seq)
        ]
        return state_pb2.CallLog(calls=records)

    def Reset(self, request, context):
        self.sim.reset()
        return self.sim.state()

    def SetServiceAvailable(self, request, context):
        self._guard(context, self.sim.set_service_available, request.service, request.available)
        return self.sim.state()

    @staticmethod
    def _guard(context, fn, *args):
        try:
            fn(*args)
        except InvalidCall as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


@dataclass
class RunningSimulator:
    server: grpc.Server
    endpoint: Endpoint  # with the real port when port 0 was asked for
    simulator: Simulator

    def stop(self, grace: float | None = 1.0) -> None:
        self.server.stop(grace).wait()
        self.simulator.journal.close()


def start_simulator(registry: Registry, endpoint: Endpoint, record_path: str = "", workers: int = 8) -> RunningSimulator:
    """Start serving on endpoint; returns at once with the bound address."""
    sim = Simulator(registry, CallJournal(record_path))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers(sim.handlers())
    state_pb2_grpc.add_VehicleServicer_to_server(VehicleServicer(sim), server)
    health_pb2_grpc.add_HealthServicer_to_server(sim.health, server)
    if endpoint.scheme == "unix":
        prepare_unix_socket(endpoint.path)
    port = server.add_insecure_port(endpoint.grpc_target)
    if endpoint.scheme == "tcp":
        if port == 0:
            raise OSError(f"cannot listen on {endpoint}")
        endpoint = endpoint.with_port(port)
    server.start()
    return RunningSimulator(server, endpoint, sim)

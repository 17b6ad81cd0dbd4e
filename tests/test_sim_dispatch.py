"""Every function through the real dispatcher to the real simulator, and every refusal."""

import time
from concurrent import futures

import grpc
import pytest

from agent.config import VehicleSettings
from agent.dispatch import Dispatcher
from agent.errors import InvalidCall, VehicleRejected, VehicleUnavailable
from agent.gen.vehicle.v1 import options_pb2
from agent.registry import FunctionSpec
from tests.conftest import settings_for


def changed_value(arg, current):
    """A valid value of arg that differs from its current state."""
    if arg.type == "bool":
        return not current
    if arg.type == "enum":
        return next(v for v in reversed(arg.values) if v != current and v != "all")
    if arg.type == "string":
        return "12 oak street"
    return arg.max if current != arg.max else arg.min


def call_for(spec: FunctionSpec, state: dict) -> dict:
    args = {}
    for arg in spec.args:
        if arg.selector:
            args[arg.name] = next(v for v in arg.values if v != "all")
        elif arg.delta_of:
            args[arg.name] = -arg.vague_step
        else:
            key = f"{spec.name}[{','.join(f'{k}={v}' for k, v in args.items())}]" if args else spec.name
            args[arg.name] = changed_value(arg, state.get(key, {}).get(arg.name))
    return args


def test_every_function_dispatches_and_changes_state(registry, dispatcher, vehicle):
    for spec in registry:
        if spec.clears:  # first start what it ends
            target = registry.get(spec.clears)
            dispatcher.dispatch(target.name, call_for(target, vehicle.state().functions))
        before = vehicle.state().functions
        args = call_for(spec, before)
        result = dispatcher.dispatch(spec.name, args)
        after = vehicle.state().functions
        assert after != before, f"{spec.name} changed nothing"
        assert result.state, spec.name
        for key, values in result.state.items():
            assert after[key] == values
        assert vehicle.calls()[-1].function == spec.name
        assert vehicle.calls()[-1].args == spec.complete(args)


def test_simulator_records_exactly_what_it_received(registry, dispatcher, vehicle):
    dispatcher.dispatch("set_seat_heating_intensity", {"level": 3})
    dispatcher.dispatch("set_cabin_temperature", {"zone": "passenger", "celsius": 23.5})
    calls = [(c.function, c.args) for c in vehicle.calls()]
    assert calls == [
        ("set_seat_heating_intensity", {"seat": "driver", "level": 3}),
        ("set_cabin_temperature", {"zone": "passenger", "celsius": 23.5}),
    ]
    state = vehicle.state().functions
    assert state["set_seat_heating_intensity[seat=driver]"] == {"level": 3}
    assert state["set_cabin_temperature[zone=passenger]"] == {"celsius": 23.5}
    assert state["set_cabin_temperature[zone=driver]"] == {"celsius": 21.0}


def test_start_state_matches_catalogue(vehicle):
    state = vehicle.state()
    assert state.speed_kmh == 0
    f = state.functions
    assert all(f[f"set_cabin_temperature[zone={z}]"] == {"celsius": 21.0} for z in ("driver", "passenger", "rear"))
    assert f["set_fan_speed"] == {"level": 2}
    assert f["set_volume"] == {"level": 10}
    assert f["set_door_lock"] == {"locked": True}
    assert f["set_sunroof_position"] == {"open_percent": 0}
    assert f["set_window_position[window=rear_left]"] == {"open_percent": 0}
    assert f["set_seat_heating_intensity[seat=passenger]"] == {"level": 0}
    assert f["set_air_conditioning"] == {"on": False}


def test_all_selector_sets_every_zone(dispatcher, vehicle):
    dispatcher.dispatch("set_cabin_temperature", {"celsius": 19.0})
    f = vehicle.state().functions
    assert {f[f"set_cabin_temperature[zone={z}]"]["celsius"] for z in ("driver", "passenger", "rear")} == {19.0}


def test_relative_change_applies_to_state(dispatcher, vehicle):
    dispatcher.dispatch("adjust_volume", {"delta": -2})
    dispatcher.dispatch("adjust_cabin_temperature", {"zone": "rear", "delta_celsius": 1.5})
    f = vehicle.state().functions
    assert f["set_volume"] == {"level": 8}
    assert f["set_cabin_temperature[zone=rear]"] == {"celsius": 22.5}
    assert f["set_cabin_temperature[zone=driver]"] == {"celsius": 21.0}


@pytest.mark.parametrize("function,args,message", [
    ("set_seat_heating_intensity", {"level": 9}, "above the maximum 3"),
    ("set_cabin_temperature", {"celsius": 45.0}, "above the maximum 30"),
    ("set_fan_speed", {"level": -1}, "below the minimum 0"),
    ("set_ambient_light_color", {"color": "magenta"}, "not one of"),
    ("navigate_to", {"destination": "x" * 81}, "at most 80"),
])
def test_dispatcher_refuses_invalid_calls_and_nothing_changes(dispatcher, vehicle, function, args, message):
    before = vehicle.state()
    with pytest.raises(InvalidCall, match=message):
        dispatcher.dispatch(function, args)
    assert vehicle.state() == before
    assert vehicle.calls() == []


def test_simulator_itself_refuses_out_of_range_requests(registry, sim, vehicle):
    """A raw request, bypassing the dispatcher's own checks, is refused by the car."""
    spec = registry.get("set_seat_heating_intensity")
    channel = grpc.insecure_channel(sim.endpoint.grpc_target)
    stub = channel.unary_unary(spec.full_method, request_serializer=spec.request_class.SerializeToString,
                               response_deserializer=options_pb2.CallReply.FromString)
    before = vehicle.state()
    for request in (spec.request_class(seat="driver", level=9), spec.request_class(seat="roof", level=1),
                    spec.request_class(seat="driver")):
        with pytest.raises(grpc.RpcError) as info:
            stub(request, timeout=2)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "above the maximum 3" in _details(stub, spec.request_class(seat="driver", level=9))
    assert vehicle.state() == before and vehicle.calls() == []
    channel.close()


def _details(stub, request) -> str:
    try:
        stub(request, timeout=2)
    except grpc.RpcError as exc:
        return exc.details()
    return ""


def test_relative_result_out_of_range_is_refused_by_the_car(dispatcher, vehicle):
    dispatcher.dispatch("set_volume", {"level": 29})
    before = vehicle.state()
    with pytest.raises(VehicleRejected, match="would become 33"):
        dispatcher.dispatch("adjust_volume", {"delta": 4})
    assert vehicle.state() == before


def test_unix_socket_simulator(registry, unix_sim):
    with Dispatcher(registry, settings_for(unix_sim)) as d:
        result = d.dispatch("set_fan_speed", {"level": 5})
    assert result.state == {"set_fan_speed": {"level": 5}}


def test_stopped_simulator_fails_clearly_within_deadline(registry, sim):
    settings = settings_for(sim, deadline_s=0.5)
    sim.stop(grace=None)
    with Dispatcher(registry, settings) as d:
        started = time.monotonic()
        with pytest.raises(VehicleUnavailable, match="vehicle service Seats unavailable"):
            d.dispatch("set_seat_heating_intensity", {"level": 3})
        assert time.monotonic() - started < settings.deadline_s + 0.5


def test_service_down_is_reported_by_name(registry, dispatcher, vehicle):
    vehicle.set_service_available("Climate", False)
    with pytest.raises(VehicleUnavailable, match="vehicle service Climate unavailable"):
        dispatcher.dispatch("set_fan_speed", {"level": 4})
    assert dispatcher.dispatch("set_volume", {"level": 12}).state == {"set_volume": {"level": 12}}
    vehicle.set_service_available("Climate", True)
    assert dispatcher.dispatch("set_fan_speed", {"level": 4}).attempts == 1
    assert [c.function for c in vehicle.calls()] == ["set_volume", "set_fan_speed"]


class FlakyService:
    """A real gRPC server that answers UNAVAILABLE to the first call, then OK; counts calls."""

    def __init__(self, registry):
        self.received: list[str] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handlers = {}
        for spec in registry:
            handlers.setdefault(spec.service, {})[spec.method] = grpc.unary_unary_rpc_method_handler(
                self._handler(spec.name), request_deserializer=spec.request_class.FromString,
                response_serializer=options_pb2.CallReply.SerializeToString)
        self.server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(f"vehicle.v1.{s}", m) for s, m in handlers.items()])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _handler(self, name):
        def handle(request, context):
            self.received.append(name)
            if len(self.received) == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            return options_pb2.CallReply(state_json="{}")
        return handle


@pytest.fixture
def flaky(registry):
    service = FlakyService(registry)
    yield service
    service.server.stop(None)


def test_idempotent_set_is_retried_once(registry, flaky):
    with Dispatcher(registry, VehicleSettings(uri=f"tcp://127.0.0.1:{flaky.port}")) as d:
        assert d.dispatch("set_fan_speed", {"level": 3}).attempts == 2
    assert flaky.received == ["set_fan_speed", "set_fan_speed"]


def test_relative_adjust_is_never_retried(registry, flaky):
    with Dispatcher(registry, VehicleSettings(uri=f"tcp://127.0.0.1:{flaky.port}")) as d:
        with pytest.raises(VehicleUnavailable, match="Media unavailable"):
            d.dispatch("adjust_volume", {"delta": 2})
    assert flaky.received == ["adjust_volume"]


def test_retry_can_be_switched_off(registry, flaky):
    settings = VehicleSettings(uri=f"tcp://127.0.0.1:{flaky.port}", retry_idempotent=False)
    with Dispatcher(registry, settings) as d:
        with pytest.raises(VehicleUnavailable):
            d.dispatch("set_fan_speed", {"level": 3})
    assert flaky.received == ["set_fan_speed"]


def test_health_reports_each_service(sim, vehicle):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = grpc.insecure_channel(sim.endpoint.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == serving
    vehicle.set_service_available("Body", False)
    status = health.Check(health_pb2.HealthCheckRequest(service="vehicle.v1.Body"), timeout=2).status
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    channel.close()

"""The daemon: the real process over a unix socket with systemd notify, and its queue and graceful stop."""

import json
import signal
import socket
import subprocess
import threading
import time
from concurrent import futures
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.daemon import Admission, AgentService
from agent.gen.agent.v1 import agent_pb2, agent_pb2_grpc
from agent.handler import CommandResult, Outcome
from tests.conftest import cli, cli_env, corrupt_copy


class NotifyListener:
    """A NOTIFY_SOCKET as systemd provides it: collects the datagrams the daemon sends."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def wait_for(self, prefix, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, m in self.messages:
                if m.startswith(prefix):
                    return m
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                pass
        return None


def start_daemon(tmp_path, model, vehicle_uri, notify, watchdog_usec=300000, extra=()):
    env = cli_env()
    env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC=str(watchdog_usec))
    listen = f"unix://{tmp_path}/agent.sock"
    proc = subprocess.Popen(cli("serve", "--listen", listen, "--model", str(model), "--vehicle", vehicle_uri,
                                "--no-pinning-enabled", *extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, listen


def health_status(listen):
    with grpc.insecure_channel(listen) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="agent.v1.Agent"), timeout=5).status


def test_daemon_lifecycle_with_notify(tmp_path, tiny_build, unix_sim):
    result, _ = tiny_build
    notify = NotifyListener(tmp_path / "notify")
    proc, listen = start_daemon(tmp_path, result.model, str(unix_sim.endpoint), notify)
    try:
        assert notify.wait_for("READY=1"), proc.stderr.read() if proc.poll() is not None else "no READY"
        assert health_status(listen) == health_pb2.HealthCheckResponse.SERVING
        ask = subprocess.run(cli("ask", "set the fan to three", "--json", "--listen", listen),
                             capture_output=True, text=True, env=cli_env(), timeout=60)
        assert ask.returncode == 0, ask.stderr
        reply = json.loads(ask.stdout)
        assert set(reply) == {"text", "calls", "dispatched", "reply"}
        confirm = subprocess.run(cli("confirm", "yes", "--json", "--listen", listen, "--session", "nobody"),
                                 capture_output=True, text=True, env=cli_env(), timeout=60)
        assert confirm.returncode == 0, confirm.stderr
        assert json.loads(confirm.stdout)["reply"] == "There is nothing waiting for confirmation."
        first_ping = notify.wait_for("WATCHDOG=1", timeout=5)
        assert first_ping
        time.sleep(0.8)
        notify.wait_for("NEVER", timeout=0.3)
        assert sum(m == "WATCHDOG=1" for _, m in notify.messages) >= 2
        proc.send_signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING=1", timeout=10)
        assert proc.wait(timeout=20) == 0
        events = [json.loads(line)["event"] for line in proc.stderr.read().splitlines() if line.startswith("{")]
        assert events[0] == "loading" and "ready" in events and events[-1] == "stopped"
        assert "command" in events
    finally:
        if proc.poll() is None:
            proc.kill()


def test_corrupt_model_never_reports_ready(tmp_path, tiny_build, unix_sim):
    result, _ = tiny_build
    bad = corrupt_copy(result.model, tmp_path, offset=1000)
    notify = NotifyListener(tmp_path / "notify")
    proc, _ = start_daemon(tmp_path, bad, str(unix_sim.endpoint), notify)
    assert proc.wait(timeout=60) == 1
    assert "corrupt" in proc.stderr.read()
    assert notify.wait_for("READY=1", timeout=0.5) is None


class BlockingHandler:
    """Stands in for the model pipeline so a command can be held mid-flight."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def handle(self, text, session):
        self.entered.set()
        assert self.release.wait(10)
        return CommandResult(text, [], False, "ok", Outcome.NOT_A_COMMAND)


@pytest.fixture
def agent_server(tmp_path):
    handler = BlockingHandler()
    service = AgentService(Admission(queue=0))
    service.runtime = SimpleNamespace(handler=handler)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    address = f"unix://{tmp_path}/agent.sock"
    server.add_insecure_port(address)
    server.start()
    yield server, address, handler
    handler.release.set()
    server.stop(None)


def test_full_queue_is_refused_at_once(agent_server):
    server, address, handler = agent_server
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        first = stub.Command.future(agent_pb2.CommandRequest(text="one"), timeout=10)
        assert handler.entered.wait(5)
        with pytest.raises(grpc.RpcError) as info:
            stub.Command(agent_pb2.CommandRequest(text="two"), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        handler.release.set()
        assert first.result().reply == "ok"


def test_graceful_stop_lets_the_command_finish(agent_server):
    server, address, handler = agent_server
    with grpc.insecure_channel(address) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        inflight = stub.Command.future(agent_pb2.CommandRequest(text="one"), timeout=10)
        assert handler.entered.wait(5)
        stopped = server.stop(grace=5)
        time.sleep(0.2)
        handler.release.set()
        assert inflight.result().reply == "ok"
        stopped.wait()


def test_not_ready_while_loading_answers_unavailable(tmp_path):
    service = AgentService(Admission(queue=1))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    address = f"unix://{tmp_path}/a.sock"
    server.add_insecure_port(address)
    server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as info:
                agent_pb2_grpc.AgentStub(channel).Command(agent_pb2.CommandRequest(text="x"), timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None)

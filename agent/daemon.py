"""`vehicle-agent serve`: the Agent API over gRPC, one command at a time, with systemd notify.

grpc.health.v1 answers NOT_SERVING until the model is loaded and warm.
Commands beyond the one being handled wait in a bounded queue; past it they
get RESOURCE_EXHAUSTED at once. SIGTERM stops taking commands and lets the
in-flight ones finish. Every command is logged as one JSON line on stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import replies
from agent.config import AgentConfig
from agent.errors import AudioError
from agent.gen.agent.v1 import agent_pb2, agent_pb2_grpc
from agent.handler import CommandResult
from agent.registry import Registry
from agent.sdnotify import Notifier
from agent.transport import parse_uri, prepare_unix_socket
from agent.voice import SAMPLE_RATE
from agent.voice.speech_input import RecognizerBusy

SERVICE = "agent.v1.Agent"


class AudioStream:
    """The chunks of one StreamAudio call, checked: 16 kHz (given on the first chunk), whole samples."""

    def __init__(self, request_iterator):
        self._requests = request_iterator
        self.session_id = ""

    def chunks(self):
        for n, chunk in enumerate(self._requests):
            if n == 0:
                self.session_id = chunk.session_id
                if chunk.sample_rate_hz != SAMPLE_RATE:
                    raise AudioError(f"audio must be {SAMPLE_RATE} Hz mono 16-bit PCM; the first chunk says "
                                     f"{chunk.sample_rate_hz or 'nothing'} Hz")
            elif chunk.sample_rate_hz not in (0, SAMPLE_RATE):
                raise AudioError(f"the sample rate changed to {chunk.sample_rate_hz} Hz mid-utterance")
            yield chunk.pcm


def log_event(**fields) -> None:
    fields = {"ts": round(time.time(), 3), **fields}
    sys.stderr.write(json.dumps(fields, default=str) + "\n")
    sys.stderr.flush()


def to_proto(result: CommandResult) -> agent_pb2.CommandReply:
    t = result.timing
    return agent_pb2.CommandReply(
        text=result.text,
        calls=[agent_pb2.Call(function=f, args_json=json.dumps(a)) for f, a in result.calls],
        dispatched=result.dispatched,
        reply=result.reply,
        outcome=result.outcome.value,
        timing=agent_pb2.Timing(prefill_ms=t.prefill_ms, decode_ms=t.decode_ms, dispatch_ms=t.dispatch_ms,
                                total_ms=t.total_ms),
    )


class Admission:
    """At most 1 + queue commands in the daemon at once."""

    def __init__(self, queue: int):
        self.limit = 1 + queue
        self.inside = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.inside >= self.limit:
                return False
            self.inside += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.inside -= 1


class AgentService(agent_pb2_grpc.AgentServicer):
    def __init__(self, admission: Admission):
        self.runtime = None  # set once the model is loaded and warm
        self.admission = admission
        self._one_at_a_time = threading.Lock()
        self.served = 0

    def _run(self, context, kind: str, fn, **log_fields):
        if self.runtime is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the agent is still loading its model")
        result = self.execute(kind, fn, **log_fields)
        if result is None:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"busy: {self.admission.limit} commands already waiting")
        return to_proto(result)

    def execute(self, kind: str, fn, **log_fields) -> CommandResult | None:
        """Run one command in turn and log it; None when the queue is full."""
        if not self.admission.enter():
            return None
        try:
            with self._one_at_a_time:
                result = fn()
                self.served += 1
        finally:
            self.admission.leave()
        t = result.timing
        log_event(event=kind, **log_fields, decoded=[{"function": f, "args": a} for f, a in result.calls],
                  outcome=result.outcome.name.lower(), dispatched=result.dispatched, reply=result.reply,
                  latency_ms={"prefill": round(t.prefill_ms, 2), "decode": round(t.decode_ms, 2),
                              "dispatch": round(t.dispatch_ms, 2), "total": round(t.total_ms, 2)})
        return result

    def Command(self, request, context):
        if not request.text.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "empty command")
        return self._run(context, "command", lambda: self.runtime.handler.handle(request.text, request.session_id),
                         text=request.text, session=request.session_id)

    def Confirm(self, request, context):
        return self._run(context, "confirm", lambda: self.runtime.handler.confirm(request.session_id, request.yes),
                         session=request.session_id, yes=request.yes)

    def StreamAudio(self, request_iterator, context):
        if self.runtime is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the agent is still loading its model")
        speech = self.runtime.speech
        if speech is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "speech input is off (voice.enabled is false)")
        stream = AudioStream(request_iterator)
        # a client that stops sending without closing is cut off: the stream cannot hold the recognizer
        timer = threading.Timer(speech.settings.max_utterance_s * 2 + 5, context.cancel)
        timer.start()
        try:
            transcript = speech.transcribe(stream.chunks())
        except RecognizerBusy as exc:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except AudioError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except grpc.RpcError:
            transcript = None  # the client went away mid-utterance
        finally:
            timer.cancel()
        if transcript is None or not context.is_active():
            log_event(event="audio_abandoned", session=stream.session_id)
            return agent_pb2.CommandReply()
        recognition_ms = round(transcript.processing_ms, 2)
        if not transcript.text:
            log_event(event="audio", session=stream.session_id, transcript="", audio_s=round(transcript.audio_s, 2),
                      ended_by=transcript.ended_by, recognition_ms=recognition_ms)
            return agent_pb2.CommandReply(outcome=agent_pb2.OUTCOME_NOT_A_COMMAND, reply=replies.NOT_HEARD,
                                          timing=agent_pb2.Timing(recognition_ms=transcript.processing_ms,
                                                                  total_ms=transcript.final_ms))
        reply = self._run(context, "audio", lambda: self.runtime.handler.handle(transcript.text, stream.session_id),
                          transcript=transcript.text, session=stream.session_id, audio_s=round(transcript.audio_s, 2),
                          ended_by=transcript.ended_by, recognition_ms=recognition_ms)
        reply.timing.recognition_ms = transcript.processing_ms
        reply.timing.total_ms += transcript.final_ms
        return reply

    def Status(self, request, context):
        if self.runtime is None:
            return agent_pb2.StatusReply(ready=False)
        model = self.runtime.model
        return agent_pb2.StatusReply(ready=True, model_path=str(model.path), model_sha256=model.sha256,
                                     queued=max(0, self.admission.inside - 1), commands_served=self.served)


def serve(config: AgentConfig, registry: Registry, notifier: Notifier | None = None, announce=print) -> int:
    """Load, serve until SIGTERM/SIGINT, stop gracefully. Errors loading (ModelError...) propagate, with no READY."""
    from agent.runtime import build_runtime

    notifier = notifier or Notifier()
    endpoint = parse_uri(config.daemon.listen)
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    admission = Admission(config.daemon.queue)
    service = AgentService(admission)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=admission.limit + 4))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    agent_pb2_grpc.add_AgentServicer_to_server(service, server)
    if endpoint.scheme == "unix":
        prepare_unix_socket(endpoint.path)
    port = server.add_insecure_port(endpoint.grpc_target)
    if endpoint.scheme == "tcp":
        endpoint = endpoint.with_port(port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()  # health answers NOT_SERVING while the model loads
    log_event(event="loading", listen=str(endpoint))
    started = time.monotonic()
    try:
        runtime = build_runtime(config, registry)
    except BaseException:
        server.stop(None)
        raise
    service.runtime = runtime
    for name in ("", SERVICE):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log_event(event="ready", listen=str(endpoint), model=str(runtime.model.path),
              load_s=round(time.monotonic() - started, 2))
    if config.voice.capture_device and runtime.speech is not None:
        threading.Thread(target=listen_hands_free, args=(service, config.voice.capture_device, stop),
                         name="hands-free", daemon=True).start()
    announce(f"vehicle agent listening on {endpoint}")
    notifier.ready(f"serving on {endpoint}")
    notifier.start_watchdog()
    stop.wait()
    notifier.stopping()
    log_event(event="stopping")
    health_servicer.enter_graceful_shutdown()
    server.stop(config.daemon.grace_s).wait()
    notifier.stop_watchdog()
    runtime.close()
    log_event(event="stopped", commands_served=service.served)
    return 0


def listen_hands_free(service: AgentService, device: str, stop: threading.Event) -> None:
    """A standalone head unit: capture from an ALSA device, each utterance (ended by silence) a command."""
    from agent.voice.capture import Microphone

    speech = service.runtime.speech
    try:
        with Microphone(device) as microphone:
            chunks = microphone.chunks()
            log_event(event="capture", device=device)
            while not stop.is_set():
                try:
                    transcript = speech.transcribe(chunks, hands_free=True)
                except RecognizerBusy:
                    time.sleep(0.1)  # a StreamAudio call has the recognizer; this audio is skipped
                    continue
                if transcript.audio_s == 0:
                    break  # the device closed
                if transcript.text:
                    service.execute("capture", lambda: service.runtime.handler.handle(transcript.text, "capture"),
                                    transcript=transcript.text, audio_s=round(transcript.audio_s, 2),
                                    recognition_ms=round(transcript.processing_ms, 2))
    except AudioError as exc:
        log_event(event="capture_failed", device=device, error=str(exc))

"""The agent's commands: serve, ask, confirm, eval, model info. (cli.py wires them up.)"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import grpc

from agent.config import config_from_args
from agent.errors import AgentError, ConfigError, ModelError, VehicleUnavailable

FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 15: "Q4_K_M", 25: "IQ4_NL"}


def cmd_serve(args) -> int:
    from agent.daemon import serve
    from agent.registry import load_registry

    return serve(config_from_args(args), load_registry(), announce=lambda line: print(line, flush=True))


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    for call in result["calls"]:
        print(f"  {call['function']} {json.dumps(call['args'])}")
    print(result["reply"])


def _remote(config, method: str, request):
    from agent.gen.agent.v1 import agent_pb2_grpc
    from agent.transport import parse_uri

    target = parse_uri(config.daemon.listen).grpc_target
    with grpc.insecure_channel(target) as channel:
        try:
            return getattr(agent_pb2_grpc.AgentStub(channel), method)(request, timeout=30)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and "loading" not in (exc.details() or ""):
                raise VehicleUnavailable(f"the agent daemon is not running at {config.daemon.listen}") from None
            raise AgentError(f"the agent daemon refused: {exc.details()}") from None


def _reply_json(reply) -> dict:
    out = {"text": reply.text, "calls": [{"function": c.function, "args": json.loads(c.args_json)} for c in reply.calls],
           "dispatched": reply.dispatched, "reply": reply.reply}
    if reply.timing.recognition_ms:
        out["recognition_ms"] = round(reply.timing.recognition_ms, 2)
    return out


def cmd_ask(args) -> int:
    if (args.text is None) == (args.audio is None):
        raise ConfigError("give the command as text or as --audio FILE.wav (one of them)")
    config = config_from_args(args)
    pcm = None
    if args.audio:
        from agent.voice.audio import read_wav

        pcm = read_wav(args.audio)
    if args.local:
        result = _ask_local(config, args.text, pcm, args.session)
    elif pcm is not None:
        from agent.voice.utterance import chunked

        reply = _remote(config, "StreamAudio", _audio_requests(chunked(pcm), args.session))
        result = _reply_json(reply)
    else:
        from agent.gen.agent.v1 import agent_pb2

        result = _reply_json(_remote(config, "Command", agent_pb2.CommandRequest(text=args.text, session_id=args.session)))
    if args.audio and not args.json:
        print(f"heard: {result['text']!r}")
    _print_result(result, args.json)
    return 0


def _ask_local(config, text: str | None, pcm: bytes | None, session: str) -> dict:
    from agent import replies
    from agent.registry import load_registry
    from agent.runtime import build_runtime

    runtime = build_runtime(config if pcm is not None else config.without_voice(), load_registry())
    try:
        timing = {}
        if pcm is not None:
            from agent.voice.utterance import chunked

            transcript = runtime.speech.transcribe(chunked(pcm))
            text = transcript.text
            timing = {"recognition_ms": round(transcript.processing_ms, 2), "audio_s": round(transcript.audio_s, 2)}
            if not text:
                return {"text": "", "calls": [], "dispatched": False, "reply": replies.NOT_HEARD, **timing}
        return {**runtime.handler.handle(text, session).to_json(), **timing}
    finally:
        runtime.close()


def _audio_requests(chunks, session: str):
    from agent.gen.agent.v1 import agent_pb2
    from agent.voice import SAMPLE_RATE

    for n, chunk in enumerate(chunks):
        yield agent_pb2.AudioChunk(pcm=chunk, sample_rate_hz=SAMPLE_RATE if n == 0 else 0, session_id=session)


def cmd_listen(args) -> int:
    """Hands-free: each utterance (ended by silence) is streamed to the daemon as it is spoken."""
    from agent.voice.capture import Microphone, one_utterance
    from agent.voice.endpoint import EndpointConfig

    config = config_from_args(args)
    endpoint = EndpointConfig(trailing_silence_s=config.voice.trailing_silence_s)
    with Microphone(args.device) as microphone:
        chunks = microphone.chunks()
        if not args.json:
            print(f"listening on {args.device} (Ctrl-C stops)", flush=True)
        try:
            while True:
                utterance = one_utterance(chunks, endpoint, config.voice.max_utterance_s)
                first = next(utterance, None)
                if first is None:
                    return 0  # the device closed
                reply = _remote(config, "StreamAudio", _audio_requests(_prepend(first, utterance), args.session))
                result = _reply_json(reply)
                if result["text"] or args.once:
                    if not args.json:
                        print(f"heard: {result['text']!r}")
                    _print_result(result, args.json)
                if args.once:
                    return 0
        except KeyboardInterrupt:
            return 0


def _prepend(first: bytes, rest):
    yield first
    yield from rest


def cmd_confirm(args) -> int:
    from agent.gen.agent.v1 import agent_pb2

    config = config_from_args(args)
    reply = _remote(config, "Confirm", agent_pb2.ConfirmRequest(session_id=args.session, yes=args.answer == "yes"))
    _print_result(_reply_json(reply), args.json)
    return 0


def cmd_eval(args) -> int:
    from agent import evaluation
    from agent.registry import load_registry
    from agent.runtime import build_runtime
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri

    config = config_from_args(args)
    cases = evaluation.load_cases(args.file)
    registry = load_registry()
    with tempfile.TemporaryDirectory() as tmp:
        sim = start_simulator(registry, parse_uri(f"unix://{tmp}/vehicle.sock"))
        config = dataclasses.replace(config, vehicle=dataclasses.replace(config.vehicle, uri=str(sim.endpoint)))
        runtime = build_runtime(config.without_voice(), registry)
        try:
            results = evaluation.run_cases(runtime.handler, runtime.handler.vehicle, registry, cases)
        finally:
            runtime.close()
            sim.stop(grace=None)
    summary = evaluation.summary(results)
    if args.json:
        print(json.dumps(summary))
        return 0
    for failure in evaluation.failures(results):
        print(f"FAIL [{failure['kind']}] {failure['text']!r}\n  expected {failure['expect']}\n  received {failure['received']}")
    print(f"{summary['passed']}/{summary['cases']} cases passed (accuracy {summary['accuracy']:.3f}); "
          f"false actuations {summary['false_actuations']}, wrong actuations {summary['wrong_actuations']}; "
          f"latency p50 {summary['latency_ms']['p50']:.0f} ms, p95 {summary['latency_ms']['p95']:.0f} ms")
    for kind, entry in sorted(summary["by_kind"].items()):
        print(f"  {kind:<13} {entry['passed']}/{entry['cases']}")
    return 0


def model_info(path: Path) -> dict:
    import llama_cpp

    from agent import manifest, modelkeys, paths

    sha = manifest.verify(path)
    try:
        llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except ValueError as exc:
        raise ModelError(f"llama.cpp cannot read {path}: {exc}") from None
    meta = llm.metadata
    function_map = json.loads(meta.get(modelkeys.FUNCTION_MAP, "{}"))
    recipe = json.loads(meta.get(modelkeys.RECIPE, "{}"))
    report = paths.build_report(path)
    return {
        "path": str(path),
        "sha256": sha,
        "base_model": recipe.get("base", "unknown"),
        "block_count": int(meta.get("gemma3.block_count", 0)),
        "base_block_count": int(meta.get(modelkeys.BASE_BLOCKS, 0)),
        "removed_blocks": json.loads(meta.get(modelkeys.REMOVED, "[]")),
        "quantization": FILE_TYPES.get(int(meta.get("general.file_type", -1)), meta.get("general.file_type")),
        "functional_tokens": function_map,
        "prompt_leading_space": modelkeys.prompt_leading_space(meta),  # how the daemon writes its prompts
        "registry_sha256": meta.get(modelkeys.REGISTRY_SHA, ""),
        "build_report": str(report) if report.is_file() else None,
    }


def cmd_model_info(args) -> int:
    from agent.runtime import model_path

    info = model_info(model_path(config_from_args(args)))
    if args.json:
        print(json.dumps(info))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if key == "functional_tokens":
            value = f"{len(value)} ({', '.join(f'{k}={v}' for k, v in list(value.items())[:3])}, ...)"
        print(f"{key:<{width}} {value}")
    return 0

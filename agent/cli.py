"""`vehicle-agent`: the command line. Thin: each command parses, calls plain functions, prints.

Errors the user can act on (AgentError) become one line on stderr and an exit
code: 2 for a bad request or configuration, 1 for a vehicle or model failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from agent.config import add_flags, config_from_args
from agent.errors import AgentError, AudioError, ConfigError, InvalidCall, VehicleRejected

EXIT_FAILURE = 1
EXIT_BAD_REQUEST = 2


def cmd_functions(args) -> int:
    from agent.registry import load_registry

    registry = load_registry()
    if args.json:
        print(json.dumps(registry.to_json(), indent=2))
        return 0
    for spec in registry:
        params = " ".join(
            f"{a.name}={'|'.join(a.values) if a.values else a.type}" + (f"(default {a.default})" if a.has_default else "")
            for a in spec.args
        )
        risk = "" if spec.risk.levels == ("normal",) else f"  [{', '.join(spec.risk.levels)}]"
        print(f"{spec.service:<11} {spec.name:<34} {params}{risk}")
    return 0


def cmd_sim(args) -> int:
    from agent.registry import load_registry
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri

    config = config_from_args(args)
    running = start_simulator(load_registry(), parse_uri(config.sim.listen), config.sim.record)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"vehicle simulator listening on {running.endpoint}", flush=True)
    stop.wait()
    running.stop(grace=2.0)
    print("vehicle simulator stopped", flush=True)
    return 0


def parse_assignments(spec, pairs: list[str]) -> dict:
    """`key=value` words into typed arguments of `spec`."""
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidCall(f"{pair!r} is not key=value")
        args[key] = spec.arg(key).parse(value)
    return args


def cmd_call(args) -> int:
    from agent.dispatch import Dispatcher
    from agent.registry import load_registry

    config = config_from_args(args)
    registry = load_registry()
    spec = registry.get(args.function)
    call_args = spec.complete(parse_assignments(spec, args.assignments))
    with Dispatcher(registry, config.vehicle) as dispatcher:
        result = dispatcher.dispatch(spec.name, call_args)
    print(json.dumps({"function": result.function, "args": result.args, "state": result.state}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vehicle-agent", description="On-device agent for vehicle commands.")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file (default: built-in settings)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("functions", help="list the vehicle functions of the registry")
    p.add_argument("--json", action="store_true", help="print the registry as JSON")
    p.set_defaults(handler=cmd_functions)

    p = sub.add_parser("sim", help="run the vehicle simulator")
    add_flags(p, "sim")
    p.set_defaults(handler=cmd_sim)

    p = sub.add_parser("call", help="dispatch one vehicle call, e.g. call set_fan_speed level=3")
    p.add_argument("function")
    p.add_argument("assignments", nargs="*", metavar="key=value")
    add_flags(p, "vehicle")
    p.set_defaults(handler=cmd_call)

    from agent import cli_agent

    p = sub.add_parser("serve", help="run the agent daemon")
    add_flags(p, "daemon", "model", "pinning", "vehicle", "voice")
    p.set_defaults(handler=cli_agent.cmd_serve)

    p = sub.add_parser("ask", help="send one command, typed or spoken (to the daemon, or --local in this process)")
    p.add_argument("text", nargs="?", help="the command (or give --audio)")
    p.add_argument("--audio", metavar="FILE.wav", help="a spoken command: any PCM WAV file (converted to 16 kHz mono)")
    p.add_argument("--json", action="store_true", help="print {text, calls, dispatched, reply}")
    p.add_argument("--local", action="store_true", help="load the model in this process instead of asking the daemon")
    p.add_argument("--session", default="cli", help="conversation id (confirmations are per session)")
    add_flags(p, "daemon", "model", "pinning", "vehicle", "voice")
    p.set_defaults(handler=cli_agent.cmd_ask)

    p = sub.add_parser("listen", help="speak commands into a microphone; each utterance goes to the daemon")
    p.add_argument("--device", default="default", help="ALSA capture device (default: default)")
    p.add_argument("--once", action="store_true", help="stop after the first utterance")
    p.add_argument("--json", action="store_true", help="print one JSON object per utterance")
    p.add_argument("--session", default="cli")
    add_flags(p, "daemon", "voice")
    p.set_defaults(handler=cli_agent.cmd_listen)

    p = sub.add_parser("confirm", help="answer the pending confirmation of a session")
    p.add_argument("answer", choices=["yes", "no"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--session", default="cli")
    add_flags(p, "daemon")
    p.set_defaults(handler=cli_agent.cmd_confirm)

    p = sub.add_parser("eval", help="score an eval file (JSON lines) against a fresh simulator")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_flags(p, "model", "pinning")
    p.set_defaults(handler=cli_agent.cmd_eval)

    p = sub.add_parser("model", help="the installed model")
    model_sub = p.add_subparsers(dest="model_command", required=True)
    q = model_sub.add_parser("info", help="path, hash, layers, quantization, functional tokens, build report")
    q.add_argument("--json", action="store_true")
    add_flags(q, "model")
    q.set_defaults(handler=cli_agent.cmd_model_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (InvalidCall, VehicleRejected, ConfigError, AudioError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())

"""Settings: one frozen dataclass per subsystem, loaded from one YAML file.

Each setting is declared once, here, with its default and help; the same
declaration gives the YAML key (`section.name`) and the CLI flag
(`--section-name`, or the explicit flag given to `setting`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.errors import ConfigError
from agent.transport import parse_uri


def setting(default: Any, help: str, flag: str | None = None, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "flag": flag, "choices": choices})


@dataclass(frozen=True)
class VehicleSettings:
    uri: str = setting("tcp://127.0.0.1:50051", "address of the vehicle services (unix:///path or tcp://host:port)", flag="--vehicle")
    deadline_s: float = setting(1.0, "deadline of every vehicle RPC, retries included, in seconds")
    retry_idempotent: bool = setting(True, "retry an idempotent set_* call once within its deadline when the service is unavailable")

    def __post_init__(self):
        parse_uri(self.uri)
        _positive("vehicle.deadline_s", self.deadline_s)


@dataclass(frozen=True)
class SimSettings:
    listen: str = setting("tcp://127.0.0.1:50051", "address the simulator listens on (tcp port 0 picks a free port)", flag="--listen")
    record: str = setting("", "append every accepted call as a JSON line to this file", flag="--record")

    def __post_init__(self):
        parse_uri(self.listen)


@dataclass(frozen=True)
class ModelSettings:
    path: str = setting("", "the GGUF model (default: the built default model in the model cache)", flag="--model")
    threads: int = setting(0, "llama.cpp threads when pinning is off (0: all cores)")
    context: int = setting(256, "context length in tokens")
    min_confidence: float = setting(0.95, "below this probability of its first choice (which function) a command is "
                                         "treated as not a vehicle command (0: off)")
    min_argument_confidence: float = setting(0.7, "below this probability of any later choice (a value, a further "
                                                  "call) the agent abstains rather than guess how (0: off); a choice's "
                                                  "probability counts the other tokens that would send the car the same")

    def __post_init__(self):
        for name in ("min_confidence", "min_argument_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"'model.{name}' must be from 0 up to (not including) 1, got {value}")
        if self.threads < 0:
            raise ConfigError(f"'model.threads' must be 0 or more, got {self.threads}")
        if self.context < 64:
            raise ConfigError(f"'model.context' must be at least 64, got {self.context}")


@dataclass(frozen=True)
class PinningSettings:
    enabled: bool = setting(True, "pin inference threads to the least-loaded cores")
    cores: int = setting(0, "cores given to inference (0: all but one, at least one)")
    sample_interval_s: float = setting(0.2, "how often per-core load is sampled from /proc/stat")

    def __post_init__(self):
        if self.cores < 0:
            raise ConfigError(f"'pinning.cores' must be 0 or more, got {self.cores}")
        _positive("pinning.sample_interval_s", self.sample_interval_s)


@dataclass(frozen=True)
class DaemonSettings:
    listen: str = setting("unix:///tmp/vehicle-agent.sock", "address of the agent API (unix:///path or tcp://host:port)", flag="--listen")
    queue: int = setting(4, "commands that may wait behind the one being handled; more get RESOURCE_EXHAUSTED")
    confirm_timeout_s: float = setting(10.0, "how long a confirmation waits for yes")
    grace_s: float = setting(5.0, "on SIGTERM, how long in-flight commands may take to finish")

    def __post_init__(self):
        parse_uri(self.listen)
        if self.queue < 0:
            raise ConfigError(f"'daemon.queue' must be 0 or more, got {self.queue}")
        _positive("daemon.confirm_timeout_s", self.confirm_timeout_s)


@dataclass(frozen=True)
class VoiceSettings:
    enabled: bool = setting(True, "accept speech (the StreamAudio call, ask --audio, listen)")
    backend: str = setting("pocketsphinx", "speech recognizer: pocketsphinx (its bundled US English model) or vosk",
                           choices=("pocketsphinx", "vosk"))
    model: str = setting("", "recognizer model directory (vosk: required; pocketsphinx: default its bundled en-us)")
    domain: bool = setting(True, "constrain recognition to what the agent understands (the speech language model "
                                 "built beside the command model)")
    max_utterance_s: float = setting(15.0, "longest utterance; audio past it is not listened to")
    trailing_silence_s: float = setting(0.8, "hands-free listening: this much silence after speech ends an utterance")
    capture_device: str = setting("", "ALSA device the daemon listens on by itself, hands-free (empty: audio only "
                                      "through the API)")
    keep_audio_dir: str = setting("", "save every utterance as a WAV file here (empty: audio is never written)")

    def __post_init__(self):
        if self.backend not in ("pocketsphinx", "vosk"):
            raise ConfigError(f"'voice.backend' must be pocketsphinx or vosk, got {self.backend!r}")
        if self.backend == "vosk" and self.enabled and not self.model:
            raise ConfigError("'voice.model' must name a vosk model directory when voice.backend is vosk")
        _positive("voice.max_utterance_s", self.max_utterance_s)
        _positive("voice.trailing_silence_s", self.trailing_silence_s)


@dataclass(frozen=True)
class AgentConfig:
    vehicle: VehicleSettings = field(default_factory=VehicleSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    pinning: PinningSettings = field(default_factory=PinningSettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    voice: VoiceSettings = field(default_factory=VoiceSettings)

    def without_voice(self) -> "AgentConfig":
        """The same settings with speech input off (text-only tools need no recognizer)."""
        return dataclasses.replace(self, voice=dataclasses.replace(self.voice, enabled=False))


def sections() -> dict[str, type]:
    """Section name -> its settings class."""
    return dict(_hints(AgentConfig))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """The configuration from a YAML file (optional) with `section.name` overrides on top."""
    raw: dict[str, Any] = {}
    if path:
        raw = _read_yaml(Path(path))
    for dotted, value in (overrides or {}).items():
        section, name = dotted.split(".", 1)
        raw.setdefault(section, {})[name] = value
    return _build(raw, source=str(path) if path else "settings")


def add_flags(parser: argparse.ArgumentParser, *section_names: str) -> None:
    """Add a flag for every setting of the named sections (defaults come from the config)."""
    for section_name in section_names:
        cls = sections()[section_name]
        group = parser.add_argument_group(f"{section_name} settings")
        for f in dataclasses.fields(cls):
            kind = _base_type(_hints(cls)[f.name])
            flag = f.metadata["flag"] or f"--{section_name}-{f.name}".replace("_", "-")
            common = dict(dest=f"{section_name}.{f.name}", default=argparse.SUPPRESS,
                          help=f"{f.metadata['help']} (default: {f.default!r})")
            if kind is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
            else:
                group.add_argument(flag, type=str, choices=f.metadata["choices"], metavar=f.name.upper(), **common)


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    overrides = {k: v for k, v in vars(args).items() if "." in k}
    return load_config(getattr(args, "config", None), overrides)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections ({', '.join(sections())})")
    return data


def _build(raw: dict[str, Any], source: str) -> AgentConfig:
    known = sections()
    built = {}
    for section_name, values in raw.items():
        if section_name not in known:
            raise ConfigError(f"{source}: unknown section {section_name!r}{_suggest(section_name, known)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping")
        cls = known[section_name]
        hints = _hints(cls)
        kwargs = {}
        for name, value in values.items():
            if name not in hints:
                raise ConfigError(f"{source}: unknown key '{section_name}.{name}'{_suggest(name, hints)}")
            kwargs[name] = _coerce(f"{section_name}.{name}", value, hints[name], source)
        try:
            built[section_name] = cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return AgentConfig(**built)


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    kind = _base_type(hint)
    optional = _is_optional(hint)
    if value is None and optional:
        return None
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
                return value.lower() in ("true", "yes", "on", "1")
            if isinstance(value, bool):
                return value
        elif kind is int and not isinstance(value, bool):
            if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
                return int(value)
        elif kind is float and not isinstance(value, bool):
            if isinstance(value, (int, float, str)):
                return float(value)
        elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    except ValueError:
        pass
    raise ConfigError(f"{source}: '{key}' must be {_describe(kind)}, got {value!r}")


def _describe(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(kind, kind.__name__)


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"'{key}' must be above 0, got {value!r}")


def _suggest(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(choices)})"


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and type(None) in hint.__args__


def _base_type(hint: Any) -> type:
    if isinstance(hint, types.UnionType):
        return next(a for a in hint.__args__ if a is not type(None))
    return hint

"""The function registry: every vehicle function, read once from the proto descriptors.

It is the single source of truth for everything downstream: training data,
functional tokens, decoding, the safety policy, dispatch and the simulator.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor, FileDescriptor

from agent.errors import InvalidCall
from agent.gen.vehicle.v1 import options_pb2

RISK_LEVELS = ("normal", "parked_only", "confirm")
_FLOAT_TOLERANCE = 1e-6


def snake_case(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str
    min: float | None = None
    max: float | None = None
    step: float | None = None
    values: tuple[str, ...] = ()
    default: Any = None
    on_value: float | None = None
    vague_step: float | None = None
    max_length: int | None = None
    initial: Any = None
    selector: bool = False
    delta_of: str | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not None

    def parse(self, text: str) -> Any:
        """A value of this argument's type from its text form (CLI, proto options)."""
        text = text.strip()
        try:
            if self.type == "int":
                return int(text)
            if self.type == "number":
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
                return value
        except ValueError:
            raise InvalidCall(f"argument {self.name!r} needs a{'n integer' if self.type == 'int' else ' number'}, got {text!r}") from None
        if self.type == "bool":
            lowered = text.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            raise InvalidCall(f"argument {self.name!r} needs true or false, got {text!r}")
        return text

    def check(self, value: Any) -> Any:
        """The value, normalised to the argument's type, or InvalidCall with the reason."""
        name = self.name
        if self.type == "bool":
            if not isinstance(value, bool):
                raise InvalidCall(f"argument {name!r} needs true or false, got {value!r}")
            return value
        if self.type in ("int", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidCall(f"argument {name!r} needs a number, got {value!r}")
            if self.type == "int":
                if float(value) != int(value):
                    raise InvalidCall(f"argument {name!r} needs a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.min is not None and value < self.min - _FLOAT_TOLERANCE:
                raise InvalidCall(f"{name} {_fmt(value)} is below the minimum {_fmt(self.min)}")
            if self.max is not None and value > self.max + _FLOAT_TOLERANCE:
                raise InvalidCall(f"{name} {_fmt(value)} is above the maximum {_fmt(self.max)}")
            if self.step and self.type == "number":
                base = self.min if self.min is not None else 0.0
                steps = (value - base) / self.step
                if abs(steps - round(steps)) > 1e-4:
                    raise InvalidCall(f"{name} {_fmt(value)} is not a multiple of {_fmt(self.step)}")
            return value
        if not isinstance(value, str):
            raise InvalidCall(f"argument {name!r} needs text, got {value!r}")
        if self.type == "enum":
            if value not in self.values:
                raise InvalidCall(f"{name} {value!r} is not one of: {', '.join(self.values)}")
            return value
        if not value.strip():
            raise InvalidCall(f"argument {name!r} is empty")
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidCall(f"{name} is {len(value)} characters long; at most {self.max_length} are allowed")
        return value

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        numeric = int if self.type == "int" else float
        for key in ("min", "max", "step", "on_value", "vague_step"):
            value = getattr(self, key)
            if value is not None:
                out[key] = numeric(value)
        if self.values:
            out["values"] = list(self.values)
        if self.default is not None:
            out["default"] = self.default
        if self.max_length is not None:
            out["max_length"] = self.max_length
        return out


@dataclass(frozen=True)
class RiskSpec:
    levels: tuple[str, ...] = ("normal",)
    when: tuple[tuple[str, Any], ...] = ()

    def applies(self, args: dict[str, Any]) -> tuple[str, ...]:
        """The risk levels in force for these arguments ("normal" when none)."""
        if all(args.get(name) == value for name, value in self.when):
            return self.levels
        return ("normal",)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": list(self.levels)}
        if self.when:
            out["when"] = dict(self.when)
        return out


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    service: str
    method: str
    full_method: str
    args: tuple[ArgSpec, ...]
    risk: RiskSpec
    request_class: type = field(repr=False, compare=False)
    adjusts: str | None = None
    clears: str | None = None

    @property
    def relative(self) -> bool:
        return self.adjusts is not None

    @property
    def idempotent(self) -> bool:
        # A relative change applied twice changes the car twice.
        return not self.relative

    def arg(self, name: str) -> ArgSpec:
        for spec in self.args:
            if spec.name == name:
                return spec
        raise InvalidCall(f"{self.name} has no argument {name!r} (it takes: {self.arg_names() or 'none'})")

    def arg_names(self) -> str:
        return ", ".join(a.name for a in self.args)

    def complete(self, args: dict[str, Any]) -> dict[str, Any]:
        """Every argument present and valid: defaults filled in, unknown or missing ones refused."""
        for name in args:
            self.arg(name)
        out = {}
        for spec in self.args:
            if spec.name in args:
                value = args[spec.name]
            elif spec.has_default:
                value = spec.default
            else:
                raise InvalidCall(f"{self.name} needs argument {spec.name!r}")
            out[spec.name] = spec.check(value)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "service": self.service,
            "args": {a.name: a.to_json() for a in self.args},
            "risk": self.risk.to_json(),
        }


class Registry:
    """All vehicle functions in catalogue order, looked up by name."""

    def __init__(self, functions: Iterable[FunctionSpec]):
        self.functions: tuple[FunctionSpec, ...] = tuple(functions)
        self._by_name = {f.name: f for f in self.functions}
        if len(self._by_name) != len(self.functions):
            raise ValueError("duplicate function names in the protos")

    def __len__(self) -> int:
        return len(self.functions)

    def __iter__(self):
        return iter(self.functions)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> FunctionSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise InvalidCall(f"the car has no function {name!r}") from None

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.service for f in self.functions))

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.functions]

    def sha256(self) -> str:
        """Fingerprint of everything a model depends on: names, order and arguments."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def from_files(cls, files: Iterable[FileDescriptor]) -> "Registry":
        services = []
        for file in files:
            for service in file.services_by_name.values():
                opts = service.GetOptions()
                if opts.HasExtension(options_pb2.service):
                    services.append((opts.Extensions[options_pb2.service].order, service))
        services.sort(key=lambda pair: pair[0])
        return cls(_function(service, method) for _, service in services for method in service.methods)


def load_registry() -> Registry:
    """The registry of the protos compiled into agent.gen.vehicle.v1."""
    import agent.gen.vehicle.v1 as package

    files = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.endswith("_pb2"):
            files.append(importlib.import_module(f"{package.__name__}.{info.name}").DESCRIPTOR)
    return Registry.from_files(files)


def _fmt(value: float) -> str:
    return f"{value:g}"


_FIELD_TYPES = {
    FieldDescriptor.TYPE_INT32: "int",
    FieldDescriptor.TYPE_INT64: "int",
    FieldDescriptor.TYPE_UINT32: "int",
    FieldDescriptor.TYPE_DOUBLE: "number",
    FieldDescriptor.TYPE_FLOAT: "number",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_STRING: "string",
}


def _arg(fd: FieldDescriptor) -> ArgSpec:
    opts = fd.GetOptions().Extensions[options_pb2.arg]
    try:
        kind = _FIELD_TYPES[fd.type]
    except KeyError:
        raise ValueError(f"{fd.full_name}: unsupported field type {fd.type}") from None
    if kind == "string" and opts.values:
        kind = "enum"
    numeric = int if kind == "int" else float

    def number(name: str):
        return numeric(getattr(opts, name)) if opts.HasField(name) else None

    spec = ArgSpec(
        name=fd.name,
        type=kind,
        min=number("min"),
        max=number("max"),
        step=number("step"),
        values=tuple(opts.values),
        on_value=number("on_value"),
        vague_step=number("vague_step"),
        max_length=opts.max_length if opts.HasField("max_length") else None,
        selector=opts.selector,
        delta_of=opts.delta_of if opts.HasField("delta_of") else None,
    )
    parsed = {}
    for key, option in (("default", "default_value"), ("initial", "initial")):
        if opts.HasField(option):
            parsed[key] = spec.check(spec.parse(getattr(opts, option)))
    return ArgSpec(**{**spec.__dict__, **parsed})


def _function(service, method) -> FunctionSpec:
    opts = method.GetOptions().Extensions[options_pb2.function]
    args = tuple(_arg(fd) for fd in method.input_type.fields)
    by_name = {a.name: a for a in args}
    risk = RiskSpec()
    if opts.HasField("risk"):
        when = tuple((c.arg, by_name[c.arg].parse(c.value)) for c in opts.risk.when)
        risk = RiskSpec(levels=tuple(opts.risk.level), when=when)
        unknown = set(risk.levels) - set(RISK_LEVELS)
        if unknown:
            raise ValueError(f"{method.full_name}: unknown risk level(s) {sorted(unknown)}")
    return FunctionSpec(
        name=snake_case(method.name),
        service=service.name,
        method=method.name,
        full_method=f"/{service.full_name}/{method.name}",
        args=args,
        risk=risk,
        request_class=message_factory.GetMessageClass(method.input_type),
        adjusts=opts.adjusts if opts.HasField("adjusts") else None,
        clears=opts.clears if opts.HasField("clears") else None,
    )

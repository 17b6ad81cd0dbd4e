"""The simulated car's state: pure data and rules, no gRPC.

State is kept per function and per selector value, e.g.
`set_cabin_temperature[zone=driver] -> {"celsius": 21.0}`. A selector value
"all" sets every other value. Relative functions change the state of the
function they adjust, and refuse a result outside its range.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

from agent.errors import InvalidCall
from agent.registry import ArgSpec, FunctionSpec, Registry

ALL = "all"


@dataclass(frozen=True)
class CallRecord:
    seq: int
    function: str
    args: dict[str, Any]
    unix_time: float


def selections(spec: FunctionSpec, args: dict[str, Any]) -> list[dict[str, str]]:
    """Every combination of selector values `args` picks for `spec`; a missing or "all" selector picks
    every other value. The simulator and the safety policy both use it, so they agree on what is affected."""
    choices = []
    for arg in (a for a in spec.args if a.selector):
        value = args.get(arg.name, ALL)
        values = [v for v in arg.values if v != ALL] if value == ALL else [value]
        choices.append([(arg.name, v) for v in values])
    return [dict(combo) for combo in itertools.product(*choices)]


def _initial(arg: ArgSpec) -> Any:
    if arg.initial is not None:
        return arg.initial
    if arg.type == "bool":
        return False
    if arg.type == "int":
        return arg.min if arg.min is not None else 0
    return None


def entry_key(function: str, selectors: dict[str, str]) -> str:
    if not selectors:
        return function
    return f"{function}[{','.join(f'{k}={v}' for k, v in selectors.items())}]"


class VehicleModel:
    """The car: its speed, its per-function state and the log of accepted calls."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.speed_kmh = 0.0
            self.calls: list[CallRecord] = []
            self.entries: dict[str, dict[str, Any]] = {}
            for spec in self.registry:
                if spec.relative or spec.clears:
                    continue
                values = {a.name: _initial(a) for a in spec.args if not a.selector}
                for selectors in selections(spec, {}):
                    self.entries[entry_key(spec.name, selectors)] = dict(values)

    def set_speed(self, speed_kmh: float) -> None:
        if not 0 <= speed_kmh <= 400:
            raise InvalidCall(f"speed {speed_kmh:g} km/h is not between 0 and 400")
        with self._lock:
            self.speed_kmh = float(speed_kmh)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self.entries.items()}

    def calls_after(self, seq: int) -> list[CallRecord]:
        with self._lock:
            return [c for c in self.calls if c.seq > seq]

    def apply(self, function: str, args: dict[str, Any]) -> tuple[CallRecord, dict[str, dict[str, Any]]]:
        """Validate and apply one call; returns its record and the entries it changed.

        Nothing changes when the call is refused (InvalidCall).
        """
        spec = self.registry.get(function)
        args = spec.complete(args)
        with self._lock:
            changes = self._changes(spec, args)
            for key, values in changes.items():
                self.entries[key].update(values)
            record = CallRecord(len(self.calls) + 1, spec.name, args, time.time())
            self.calls.append(record)
            return record, {k: dict(self.entries[k]) for k in changes}

    def _changes(self, spec: FunctionSpec, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        if spec.clears:
            target = self.registry.get(spec.clears)
            cleared = {a.name: None for a in target.args if not a.selector}
            return {key: dict(cleared) for key in self._keys(target, {})}
        if spec.relative:
            return self._relative_changes(spec, args)
        values = {a.name: args[a.name] for a in spec.args if not a.selector}
        return {key: dict(values) for key in self._keys(spec, args)}

    def _relative_changes(self, spec: FunctionSpec, args: dict[str, Any]) -> dict[str, dict[str, Any]]:
        target = self.registry.get(spec.adjusts)
        changes = {}
        for delta_arg in (a for a in spec.args if a.delta_of):
            absolute = target.arg(delta_arg.delta_of)
            for key in self._keys(target, args):
                current = self.entries[key][absolute.name]
                if current is None:
                    raise InvalidCall(f"{absolute.name} of {key} is not set, so it cannot be changed relatively")
                new = current + args[delta_arg.name]
                new = round(new, 6) if absolute.type == "number" else new
                try:
                    absolute.check(new)
                except InvalidCall as exc:
                    raise InvalidCall(f"{key} would become {new:g}: {exc}") from None
                changes.setdefault(key, {})[absolute.name] = new
        return changes

    def _keys(self, target: FunctionSpec, args: dict[str, Any]) -> list[str]:
        """State entries of `target` selected by the selector values in args."""
        return [entry_key(target.name, sel) for sel in selections(target, args)]

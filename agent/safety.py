"""The safety policy: decoded calls -> complete calls that may be dispatched, or a refusal.

Fills defaults, `on_value`, range ends and vague steps; checks every value
(never clamps); checks a relative change against the vehicle's current state
so the result stays in range; refuses `parked_only` functions while the car
moves; and marks `confirm` functions to wait for the driver's "yes". All calls
of one command are checked before any is dispatched: one refusal refuses all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.decoding import Call
from agent.errors import InvalidCall, PolicyRefusal
from agent.registry import FunctionSpec, Registry
from agent.sim.state import entry_key, selections
from agent.templates import is_symbolic, symbolic_value
from agent.vehicle import VehicleState


@dataclass(frozen=True)
class Approved:
    """The calls of one command, complete and checked; `confirm` says they wait for a yes."""

    calls: tuple[tuple[str, dict[str, Any]], ...]
    confirm: bool = False
    confirm_reasons: tuple[str, ...] = field(default=())


def resolve_call(spec: FunctionSpec, call: Call) -> dict[str, Any]:
    """Every argument present, symbolic values made concrete, each value checked."""
    args = {}
    for name, value in call.args.items():
        arg = spec.arg(name)
        if is_symbolic(arg, value):
            try:
                value = symbolic_value(arg, value)
            except ValueError:
                raise InvalidCall(f"{spec.name}: {arg.name} cannot be {value!r}") from None
        args[name] = value
    return spec.complete(args)


def check_relative(registry: Registry, spec: FunctionSpec, args: dict[str, Any], state: VehicleState) -> None:
    """Refuse a relative change whose result would leave the adjusted argument's range."""
    target = registry.get(spec.adjusts)
    for delta_arg in (a for a in spec.args if a.delta_of):
        absolute = target.arg(delta_arg.delta_of)
        for selection in selections(target, args):
            key = entry_key(target.name, selection)
            current = state.functions.get(key, {}).get(absolute.name)
            if current is None:
                raise PolicyRefusal(f"cannot change {absolute.name} relatively: its current value is unknown")
            new = current + args[delta_arg.name]
            try:
                absolute.check(round(new, 6))
            except InvalidCall as exc:
                raise PolicyRefusal(f"{spec.name} would take {_describe(key)} to {new:g}: {exc}") from None


def _describe(key: str) -> str:
    return key.replace("[", " (").replace("]", ")").replace("=", " ")


def approve(registry: Registry, calls: list[Call], state: VehicleState) -> Approved:
    """Check every call of one command; PolicyRefusal (nothing to dispatch) names the first problem."""
    out = []
    reasons = []
    for call in calls:
        spec = registry.get(call.function)
        try:
            args = resolve_call(spec, call)
        except InvalidCall as exc:
            raise PolicyRefusal(f"{spec.name}: {exc}") from None
        if spec.relative:
            check_relative(registry, spec, args, state)
        levels = spec.risk.applies(args)
        if "parked_only" in levels and state.speed_kmh > 0:
            raise PolicyRefusal(f"{spec.name} is only allowed while the car is parked (speed {state.speed_kmh:g} km/h)")
        if "confirm" in levels:
            reasons.append(f"{spec.name} {', '.join(f'{k}={v}' for k, v in args.items())}")
        out.append((spec.name, args))
    return Approved(tuple(out), confirm=bool(reasons), confirm_reasons=tuple(reasons))

"""What the car would receive for decoded calls: symbolic values made concrete, omitted defaults
filled in, with no range check (the safety policy checks them later)."""

from __future__ import annotations

import json
from typing import Any

from agent.registry import Registry
from agent.templates import is_symbolic, symbolic_value


def as_received(registry: Registry, calls) -> list[tuple[str, dict[str, Any]]]:
    """Decoded calls as the car would receive them: on/max/min/up/down made concrete and omitted
    defaults filled in, with no range check (an out-of-range value stays what was asked)."""
    out = []
    for call in calls:
        if call.function not in registry:
            out.append((call.function, dict(call.args)))
            continue
        spec = registry.get(call.function)
        args = {}
        for arg in spec.args:
            if arg.name in call.args:
                value = call.args[arg.name]
                if is_symbolic(arg, value):
                    try:
                        value = symbolic_value(arg, value)
                    except ValueError:
                        pass
                args[arg.name] = value
            elif arg.has_default:
                args[arg.name] = arg.default
        out.append((call.function, args))
    return out


def received_key(registry: Registry, calls) -> list[str]:
    """What the car would receive, in a form equal exactly when that is the same: calls as a
    multiset, 30 and 30.0 alike."""
    def value(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
    return sorted(json.dumps([name, sorted((k, value(v)) for k, v in args.items())])
                  for name, args in as_received(registry, calls))

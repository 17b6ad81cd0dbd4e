"""`vehicle-agent eval`: run command cases against a fresh simulator state and score them.

Scoring follows the eval format: a case passes when the calls the car
received equal `expect` as a multiset; numbers match within half their step,
strings case-folded without punctuation, whitespace collapsed and a leading
"the " dropped. False actuations (anything sent where nothing should be) and
wrong actuations (a call sent that is not expected) are counted apart.
"""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.registry import Registry

KINDS = ("single", "multi", "relative", "negative", "out_of_range", "unsafe")


@dataclass(frozen=True)
class Case:
    text: str
    kind: str
    expect: tuple[tuple[str, dict[str, Any]], ...]
    speed_kmh: float = 0.0
    followup: tuple[str, ...] = ()


@dataclass
class CaseResult:
    case: Case
    received: list[tuple[str, dict[str, Any]]]
    passed: bool
    false_actuation: bool
    wrong_calls: int
    latency_ms: float
    timing: dict[str, float] = field(default_factory=dict)


def load_cases(path: str | Path) -> list[Case]:
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    cases = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            kind = raw["kind"]
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r}")
            cases.append(Case(
                text=str(raw["text"]),
                kind=kind,
                expect=tuple((c["function"], dict(c["args"])) for c in raw["expect"]),
                speed_kmh=float((raw.get("vehicle") or {}).get("speed_kmh", 0.0)),
                followup=tuple(raw.get("followup") or ()),
            ))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not an eval case: {exc}") from None
    return cases


def _norm_string(text: str) -> str:
    text = re.sub(r"[^\w\s]", "", text.casefold())
    text = re.sub(r"\s+", " ", text).strip()
    return text[4:] if text.startswith("the ") else text


def call_matches(registry: Registry, expected: tuple[str, dict], got: tuple[str, dict]) -> bool:
    if expected[0] != got[0] or set(expected[1]) != set(got[1]):
        return False
    spec = registry.get(expected[0]) if expected[0] in registry else None
    for name, want in expected[1].items():
        have = got[1][name]
        arg = spec.arg(name) if spec else None
        if isinstance(want, bool) or isinstance(have, bool):
            if want != have:
                return False
        elif isinstance(want, (int, float)) and isinstance(have, (int, float)):
            tolerance = (arg.step if arg and arg.step else 1) / 2
            if abs(want - have) >= tolerance + 1e-9:
                return False
        elif isinstance(want, str) and isinstance(have, str):
            if arg is not None and arg.type == "string":
                if _norm_string(want) != _norm_string(have):
                    return False
            elif want != have:
                return False
        elif want != have:
            return False
    return True


def score(registry: Registry, expected: list, received: list) -> tuple[bool, int]:
    """(multiset equal, number of received calls that match no expected call)."""
    unmatched = list(expected)
    wrong = 0
    for got in received:
        for i, want in enumerate(unmatched):
            if call_matches(registry, want, got):
                del unmatched[i]
                break
        else:
            wrong += 1
    return (not unmatched and wrong == 0), wrong


def run_cases(handler, vehicle, registry: Registry, cases: list[Case]) -> list[CaseResult]:
    results = []
    for n, case in enumerate(cases):
        vehicle.reset()
        if case.speed_kmh:
            vehicle.set_speed(case.speed_kmh)
        session = f"eval-{n}"
        handler.confirmations.drop(session)
        first = handler.handle(case.text, session)
        for utterance in case.followup:
            handler.handle(utterance, session)
        received = [(c.function, c.args) for c in vehicle.calls()]
        passed, wrong = score(registry, list(case.expect), received)
        timing = {k: getattr(first.timing, k) for k in ("prefill_ms", "decode_ms", "dispatch_ms", "total_ms")}
        results.append(CaseResult(case, received, passed, bool(received) and not case.expect, wrong,
                                  first.timing.total_ms, timing))
    return results


def summary(results: list[CaseResult]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        entry = by_kind.setdefault(r.case.kind, {"cases": 0, "passed": 0})
        entry["cases"] += 1
        entry["passed"] += r.passed
    latencies = sorted(r.latency_ms for r in results)
    passed = sum(r.passed for r in results)
    return {
        "cases": len(results),
        "passed": passed,
        "accuracy": round(passed / len(results), 4) if results else 0.0,
        "by_kind": by_kind,
        "false_actuations": sum(r.false_actuation for r in results),
        "wrong_actuations": sum(r.wrong_calls for r in results),
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "latency_split_ms_p50": {k: _percentile(sorted(r.timing[k] for r in results), 50)
                                 for k in ("prefill_ms", "decode_ms", "dispatch_ms")} if results else {},
    }


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1], 2)


def failures(results: list[CaseResult]) -> list[dict[str, Any]]:
    return [{"text": r.case.text, "kind": r.case.kind, "expect": [list(c) for c in r.case.expect],
             "received": [list(c) for c in r.received]} for r in results if not r.passed]

"""One command, start to end: text -> decoded calls -> safety policy -> dispatch -> reply.

The daemon, `ask --local` and `eval` all go through CommandHandler, so they
behave alike. It keeps no state but the pending confirmations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

from agent import replies
from agent.confirmations import Confirmations, answer_of
from agent.decoding import Call
from agent.dispatch import Dispatcher
from agent.errors import DecodeError, PolicyRefusal, VehicleRejected, VehicleUnavailable
from agent.registry import Registry
from agent.safety import Approved, approve
from agent.vehicle import VehicleClient


class Outcome(Enum):
    DISPATCHED = 1
    NOT_A_COMMAND = 2
    REFUSED = 3
    NEEDS_CONFIRMATION = 4
    CANCELLED = 5
    VEHICLE_ERROR = 6


@dataclass
class Timing:
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    dispatch_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class CommandResult:
    text: str
    calls: list[tuple[str, dict[str, Any]]]
    dispatched: bool
    reply: str
    outcome: Outcome
    timing: Timing = field(default_factory=Timing)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "calls": [{"function": f, "args": a} for f, a in self.calls],
            "dispatched": self.dispatched,
            "reply": self.reply,
        }


class CommandHandler:
    def __init__(self, decode: Callable, registry: Registry, dispatcher: Dispatcher, vehicle: VehicleClient,
                 confirmations: Confirmations[Approved]):
        self._decode = decode  # text -> agent.inference.Decoded
        self.registry = registry
        self.dispatcher = dispatcher
        self.vehicle = vehicle
        self.confirmations = confirmations

    def handle(self, text: str, session: str = "") -> CommandResult:
        started = time.perf_counter()
        answer = answer_of(text)
        if answer is not None and self.confirmations.pending(session):
            return self.confirm(session, answer, text)
        timing = Timing()
        try:
            decoded = self._decode(text)
        except DecodeError as exc:
            return CommandResult(text, [], False, f"Sorry, I did not understand that ({exc}).", Outcome.REFUSED, timing)
        timing.prefill_ms, timing.decode_ms = decoded.prefill_ms, decoded.decode_ms
        if decoded.abstained:  # the model had a guess but was unsure of it: the driver can rephrase
            result = CommandResult(decoded.text, [], False, replies.UNSURE, Outcome.NOT_A_COMMAND, timing)
        else:
            result = self._act(decoded.text, decoded.calls, session, timing)
        timing.total_ms = (time.perf_counter() - started) * 1000
        return result

    def _act(self, text: str, calls: list[Call], session: str, timing: Timing) -> CommandResult:
        if not calls:
            return CommandResult(text, [], False, replies.NOT_A_COMMAND, Outcome.NOT_A_COMMAND, timing)
        try:
            approved = approve(self.registry, calls, self.vehicle.state())
        except PolicyRefusal as exc:
            shown = [(c.function, dict(c.args)) for c in calls]
            return CommandResult(text, shown, False, f"I can't do that: {exc}.", Outcome.REFUSED, timing)
        except VehicleUnavailable as exc:
            return CommandResult(text, [], False, f"The car is not answering: {exc}.", Outcome.VEHICLE_ERROR, timing)
        calls_out = list(approved.calls)
        if approved.confirm:
            self.confirmations.hold(session, approved)
            return CommandResult(text, calls_out, False, replies.confirm_question(calls_out), Outcome.NEEDS_CONFIRMATION, timing)
        return self._dispatch(text, approved, timing)

    def confirm(self, session: str, yes: bool, text: str = "") -> CommandResult:
        started = time.perf_counter()
        timing = Timing()
        approved = self.confirmations.take(session)
        if approved is None:
            return CommandResult(text, [], False, replies.NOTHING_PENDING, Outcome.CANCELLED, timing)
        calls = list(approved.calls)
        if not yes:
            return CommandResult(text, calls, False, replies.CANCELLED, Outcome.CANCELLED, timing)
        try:  # the car may have started moving since the question: check again
            approve(self.registry, [Call(f, a) for f, a in calls], self.vehicle.state())
        except PolicyRefusal as exc:
            return CommandResult(text, calls, False, f"I can't do that now: {exc}.", Outcome.REFUSED, timing)
        except VehicleUnavailable as exc:
            return CommandResult(text, [], False, f"The car is not answering: {exc}.", Outcome.VEHICLE_ERROR, timing)
        result = self._dispatch(text, approved, timing)
        result.timing.total_ms = (time.perf_counter() - started) * 1000
        return result

    def _dispatch(self, text: str, approved: Approved, timing: Timing) -> CommandResult:
        started = time.perf_counter()
        sent = []
        try:
            for function, args in approved.calls:
                self.dispatcher.dispatch(function, args)
                sent.append((function, args))
        except (VehicleUnavailable, VehicleRejected) as exc:
            timing.dispatch_ms = (time.perf_counter() - started) * 1000
            done = f" Done before that: {replies.done(sent)}" if sent else " Nothing was changed."
            return CommandResult(text, list(approved.calls), bool(sent), f"Sorry: {exc}.{done}", Outcome.VEHICLE_ERROR, timing)
        timing.dispatch_ms = (time.perf_counter() - started) * 1000
        return CommandResult(text, sent, True, replies.done(sent), Outcome.DISPATCHED, timing)

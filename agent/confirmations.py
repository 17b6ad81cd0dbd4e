"""Pending confirmations, one per session: a yes within the timeout dispatches, a no or silence drops."""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

from agent.textnorm import normalize

T = TypeVar("T")
YES = {"yes", "yes please", "yeah", "yep", "confirm", "confirmed", "do it", "sure", "ok", "okay", "go ahead", "yes do it"}
NO = {"no", "nope", "no thanks", "cancel", "dont", "do not", "stop", "never mind", "nevermind", "abort"}


def answer_of(text: str) -> bool | None:
    """True for a yes, False for a no, None for anything else."""
    normal = normalize(text)
    if normal in YES:
        return True
    if normal in NO:
        return False
    return None


class Confirmations(Generic[T]):
    def __init__(self, timeout_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._pending: dict[str, tuple[float, T]] = {}
        self._lock = threading.Lock()

    def hold(self, session: str, item: T) -> None:
        with self._lock:
            self._pending[session] = (self._clock() + self.timeout_s, item)

    def pending(self, session: str) -> bool:
        with self._lock:
            entry = self._pending.get(session)
            if entry and entry[0] < self._clock():
                del self._pending[session]
                return False
            return entry is not None

    def take(self, session: str) -> T | None:
        """The held item if still within its time (and forget it either way)."""
        with self._lock:
            entry = self._pending.pop(session, None)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def drop(self, session: str) -> bool:
        with self._lock:
            return self._pending.pop(session, None) is not None

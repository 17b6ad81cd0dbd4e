"""Timing and progress lines for the stages of one build, including the stages taken from its cache."""

from __future__ import annotations

import time


class Stages:
    """Timing and progress lines for the stages of one build. A stage taken from the cache takes no time
    in this run; `when_built` keeps what it took in the build that made it (None: not recorded)."""

    def __init__(self, name: str, progress: bool):
        self.name, self.progress = name, progress
        self.seconds: dict[str, float] = {}
        self.when_built: dict[str, float | None] = {}
        self._clock = time.monotonic()

    def done(self, stage: str, note: str = "") -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._clock, 2)
        self._clock = now
        self.say(f"{stage} done in {self.seconds[stage]:.1f} s{note}")

    def cached(self, stage: str, recorded: dict | None) -> None:
        """stage came from the cache; recorded: the stage times its cache entry kept, if any."""
        built = self.when_built[stage] = (recorded or {}).get(stage)
        self.done(stage, " (cached" + (f"; built in {built:.1f} s)" if built is not None else ")"))

    def from_scratch(self) -> float | None:
        """What the whole build took with its cached stages as long as they took when built (None: unknown)."""
        if any(v is None for v in self.when_built.values()):
            return None
        return round(sum(self.when_built.get(stage, s) for stage, s in self.seconds.items()), 1)

    def of(self, *names: str) -> dict[str, float]:
        """The seconds of these stages in this run (what a cache entry records)."""
        return {name: self.seconds[name] for name in names}

    def say(self, line: str) -> None:
        if self.progress:
            print(f"[{self.name}] {line}", flush=True)

"""CPU pinning for inference on a head unit shared with other software.

A background sampler tracks each core's load from /proc/stat. Before an
inference the least-loaded cores are chosen (default: all but one, at least
one), every thread of the process is pinned to them (each TID under
/proc/self/task: llama.cpp's workers are threads of their own), and llama.cpp's
thread count is set to match. Afterwards the process goes back to its idle
mask, so the cores are free for everything else.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


def read_core_times(path: str = "/proc/stat") -> dict[int, tuple[int, int]]:
    """Core -> (busy jiffies, total jiffies)."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *fields = line.split()
                values = [int(v) for v in fields]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


class CoreLoadSampler:
    """Per-core load (0..1), smoothed, refreshed in a daemon thread every `interval_s`."""

    def __init__(self, interval_s: float = 0.2, smoothing: float = 0.5, reader: Callable = read_core_times):
        self.interval_s = interval_s
        self.smoothing = smoothing
        self._read = reader
        self._last = reader()
        self._load = {core: 0.0 for core in self._last}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="core-load-sampler", daemon=True)

    def start(self) -> "CoreLoadSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def sample(self) -> None:
        now = self._read()
        with self._lock:
            for core, (busy, total) in now.items():
                prev_busy, prev_total = self._last.get(core, (busy, total))
                span = total - prev_total
                load = (busy - prev_busy) / span if span > 0 else 0.0
                old = self._load.get(core, load)
                self._load[core] = self.smoothing * old + (1 - self.smoothing) * load
            self._last = now

    def loads(self) -> dict[int, float]:
        with self._lock:
            return dict(self._load)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


@dataclass(frozen=True)
class Choice:
    cores: tuple[int, ...]
    loads: dict[int, float]


def choose_cores(allowed: set[int], loads: dict[int, float], count: int) -> tuple[int, ...]:
    """The `count` least-loaded allowed cores (count 0: all but one, at least one)."""
    if count <= 0:
        count = max(1, len(allowed) - 1)
    count = min(count, len(allowed))
    ranked = sorted(allowed, key=lambda core: (loads.get(core, 0.0), core))
    return tuple(sorted(ranked[:count]))


def thread_ids() -> list[int]:
    return [int(t) for t in os.listdir("/proc/self/task")]


def pin_all_threads(cores: set[int] | tuple[int, ...], skip: frozenset[int] = frozenset()) -> None:
    for tid in thread_ids():
        if tid in skip:
            continue
        try:
            os.sched_setaffinity(tid, cores)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile


class Pinner:
    """Pins the process for the duration of one inference."""

    def __init__(self, sampler: CoreLoadSampler | None, set_threads: Callable[[int], None], count: int = 0,
                 enabled: bool = True):
        self.sampler = sampler
        self.set_threads = set_threads
        self.count = count
        self.enabled = enabled and sampler is not None
        self.idle_mask = frozenset(os.sched_getaffinity(0))
        self.last_choice: Choice | None = None
        self._recognition_tids: set[int] = set()

    @contextmanager
    def pinned(self) -> Iterator[Choice | None]:
        if not self.enabled:
            yield None
            return
        loads = self.sampler.loads()
        choice = Choice(self._inference_cores(loads), loads)
        self.last_choice = choice
        pin_all_threads(choice.cores, frozenset(self._recognition_tids))
        self.set_threads(len(choice.cores))
        try:
            yield choice
        finally:
            pin_all_threads(self.idle_mask, frozenset(self._recognition_tids))

    def spare_cores(self) -> frozenset[int]:
        """The cores inference would not take now (all allowed ones when it would take them all)."""
        if not self.enabled:
            return self.idle_mask
        spare = self.idle_mask - set(self._inference_cores(self.sampler.loads()))
        return frozenset(spare) or self.idle_mask

    def _inference_cores(self, loads: dict[int, float]) -> tuple[int, ...]:
        return choose_cores(set(self.idle_mask), loads, self.count)

    @contextmanager
    def recognition(self) -> Iterator[frozenset[int]]:
        """Run the calling thread (speech recognition) on the spare cores, out of inference's way;
        inference pinning leaves it there meanwhile."""
        tid = threading.get_native_id()
        cores = self.spare_cores()
        self._recognition_tids.add(tid)
        try:
            if self.enabled:
                os.sched_setaffinity(tid, cores)
            yield cores
        finally:
            self._recognition_tids.discard(tid)
            if self.enabled:
                os.sched_setaffinity(tid, self.idle_mask)

"""CPU pinning: the choice of cores, and proof from /proc that every thread is pinned."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.pinning import CoreLoadSampler, Pinner, choose_cores

ALL_CORES = sorted(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(len(ALL_CORES) < 2, reason="pinning to the other core needs two cores")


def allowed_lists(pid="self") -> dict[int, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    out[int(task.name)] = line.split(":", 1)[1].strip()
        except FileNotFoundError:
            pass
    return out


def test_choose_least_loaded():
    assert choose_cores({0, 1}, {0: 0.9, 1: 0.1}, 0) == (1,)
    assert choose_cores({0, 1, 2, 3}, {0: 0.5, 1: 0.9, 2: 0.0, 3: 0.2}, 0) == (0, 2, 3)
    assert choose_cores({0, 1, 2, 3}, {0: 0.5, 1: 0.9, 2: 0.0, 3: 0.2}, 2) == (2, 3)
    assert choose_cores({0}, {0: 1.0}, 0) == (0,)
    assert choose_cores({0, 1}, {}, 5) == (0, 1)


def test_sampler_computes_load_from_jiffies():
    snapshots = iter([{0: (0, 100), 1: (0, 100)}, {0: (90, 200), 1: (10, 200)}])
    sampler = CoreLoadSampler(smoothing=0.0, reader=lambda: next(snapshots))
    sampler.sample()
    loads = sampler.loads()
    assert loads[0] == pytest.approx(0.9) and loads[1] == pytest.approx(0.1)


def wait_until_core0_busier(sampler, timeout=8.0):
    """The sampler must see the hog on core 0 before a choice can be judged (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loads = sampler.loads()
        if loads[0] > 0.5 and loads[0] > loads[1] + 0.3:
            return
        time.sleep(0.1)
    pytest.fail(f"core 0 never looked busier than core 1 ({sampler.loads()}): is something else loading core 1?")


@pytest.fixture
def busy_core0():
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    yield proc
    proc.kill()
    proc.wait()


@needs_two_cores
def test_busy_core_is_avoided_and_every_thread_pinned(busy_core0):
    sampler = CoreLoadSampler(interval_s=0.1).start()
    threads_set = []
    try:
        wait_until_core0_busier(sampler)
        pinner = Pinner(sampler, threads_set.append, count=1)
        with pinner.pinned() as choice:
            assert 0 not in choice.cores
            inside = allowed_lists()
        after = allowed_lists()
    finally:
        sampler.stop()
    expected = ",".join(str(c) for c in choice.cores)
    assert threads_set == [len(choice.cores)]
    assert len(inside) >= 2 and set(inside.values()) == {expected}, inside
    assert all(v != expected for v in after.values())  # back to the idle mask


@needs_two_cores
def test_llama_threads_are_pinned_during_inference(registry, tiny_build, busy_core0):
    from agent.inference import CommandModel

    result, _ = tiny_build
    model = CommandModel(result.model, registry, threads=2)
    model.decode("turn on the fan")  # llama.cpp starts its worker threads
    sampler = CoreLoadSampler(interval_s=0.1).start()
    seen = {}
    try:
        wait_until_core0_busier(sampler)
        pinner = Pinner(sampler, model.set_threads, count=1)
        original = model.llm.eval

        def eval_and_look(tokens):  # read every thread's mask while llama.cpp is decoding
            original(tokens)
            seen.update(allowed_lists())

        model.llm.eval = eval_and_look
        with pinner.pinned() as choice:
            model.decode("set the fan to three")
    finally:
        sampler.stop()
    assert choice.cores == tuple(c for c in ALL_CORES if c != 0)[:1]
    assert model.threads == 1
    assert len(seen) >= 2 and set(seen.values()) == {str(choice.cores[0])}, seen

"""The measurements, each a plain function: warm up, repeat, report medians."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import psutil


def median(values) -> float:
    return round(float(statistics.median(values)), 3)


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp

    return {
        "cpu": cpu or platform.processor(),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "llama_cpp_python": llama_cpp.__version__,
        "kernel": platform.release(),
    }


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Sustained copy bandwidth (read + write), median of repeats."""
    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(dst, src)
        rates.append(2 * src.nbytes / (time.perf_counter() - started) / 1e9)
    return median(rates)


def token_rates(model, repeats: int, prompt_tokens: int = 64, decode_tokens: int = 32) -> dict:
    """Prompt processing and unconstrained decoding, tokens per second (medians)."""
    llm = model.llm
    words = model.tokenizer.encode(" the car is warm and the music is loud" * 16)[:prompt_tokens]
    prompt = [model.tokenizer.bos_id] + words
    pp, tg = [], []
    for i in range(repeats + 1):
        llm.reset()
        started = time.perf_counter()
        llm.eval(prompt)
        prefill = time.perf_counter() - started
        token = int(np.argmax(model._logits()))
        started = time.perf_counter()
        for _ in range(decode_tokens):
            llm.eval([token])
            token = int(np.argmax(model._logits()))
        decode = time.perf_counter() - started
        if i:  # the first round warms up
            pp.append(len(prompt) / prefill)
            tg.append(decode_tokens / decode)
    return {"prompt_tokens": len(prompt), "prompt_tokens_per_s": median(pp),
            "decode_tokens": decode_tokens, "decode_tokens_per_s": median(tg)}


def command_latencies(handler, vehicle, texts: list[str]) -> list[float]:
    out = []
    for n, text in enumerate(texts):
        vehicle.reset()
        out.append(handler.handle(text, f"bench-{n}").timing.total_ms)
    return out


def percentiles(values: list[float]) -> dict:
    arr = np.array(values)
    return {"p50": round(float(np.percentile(arr, 50)), 2), "p95": round(float(np.percentile(arr, 95)), 2)}


@contextmanager
def cpu_hog(core: int):
    """A competing process spinning on one core (another app on the head unit)."""
    code = f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        time.sleep(1.0)  # let the load sampler see it
        yield proc
    finally:
        proc.kill()
        proc.wait()


def process_usage(started_cpu, started_wall) -> dict:
    proc = psutil.Process()
    cpu = proc.cpu_times()
    used = (cpu.user + cpu.system) - started_cpu
    wall = time.perf_counter() - started_wall
    import resource

    return {"cpu_seconds": round(used, 2), "wall_seconds": round(wall, 2),
            "cpu_cores_busy": round(used / max(wall, 1e-9), 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}

"""`python -m bench`: the QA benchmark. Writes bench/results/bench-<time>.json and a PNG beside it.

    python -m bench [--model FILE] [--cases FILE.jsonl] [--repeats N] [--out DIR]

What it reports and how to read it: bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import psutil

from bench import compare, measure

REPO = Path(__file__).resolve().parent.parent


def run(model_path: Path, cases_path: Path, repeats: int, out_dir: Path, json_tool: bool = True,
        compare_models: list[Path] | None = None) -> Path:
    from agent.config import AgentConfig, PinningSettings, VehicleSettings
    from agent.evaluation import load_cases
    from agent.registry import load_registry
    from agent.runtime import build_runtime
    from agent.sim.server import start_simulator
    from agent.transport import parse_uri

    started_cpu = sum(psutil.Process().cpu_times()[:2])
    started_wall = time.perf_counter()
    registry = load_registry()
    texts = [c.text for c in load_cases(cases_path)]
    result: dict = {"machine": measure.machine(), "settings": {"model": str(model_path), "cases": str(cases_path),
                                                                 "commands": len(texts), "repeats": repeats}}
    result["memory_bandwidth_gbs"] = measure.memory_bandwidth_gbs()
    with tempfile.TemporaryDirectory() as tmp:
        sim = start_simulator(registry, parse_uri(f"unix://{tmp}/vehicle.sock"))
        runs = {}
        try:
            for pinned in (True, False):
                config = AgentConfig(vehicle=VehicleSettings(uri=str(sim.endpoint)),
                                     pinning=PinningSettings(enabled=pinned))
                config = dataclasses.replace(config, model=dataclasses.replace(config.model, path=str(model_path)))
                runtime = build_runtime(config.without_voice(), registry)
                try:
                    if pinned:
                        result["tokens"] = measure.token_rates(runtime.model, repeats)
                    vehicle = runtime.handler.vehicle
                    measure.command_latencies(runtime.handler, vehicle, texts[:5])  # warm up
                    quiet = [measure.percentiles(measure.command_latencies(runtime.handler, vehicle, texts))
                             for _ in range(repeats)]
                    with measure.cpu_hog(core=0):
                        loaded = [measure.percentiles(measure.command_latencies(runtime.handler, vehicle, texts))
                                  for _ in range(repeats)]
                    runs["pinned" if pinned else "unpinned"] = {
                        "quiet_ms": {k: measure.median(r[k] for r in quiet) for k in ("p50", "p95")},
                        "with_competing_load_ms": {k: measure.median(r[k] for r in loaded) for k in ("p50", "p95")},
                    }
                    if pinned:
                        cases = load_cases(cases_path)
                        result["decoders"] = compare.compare_decoders(runtime, registry, cases, REPO / "models" / "templates",
                                                                      json_tool)
                        models = compare_models if compare_models is not None else compare.sibling_models(model_path)
                        result["models"] = compare.compare_models([model_path] + models, registry, runtime, cases,
                                                                  runtime.model.threads)
                finally:
                    runtime.close()
        finally:
            sim.stop(grace=None)
    result["latency"] = runs
    size = model_path.stat().st_size
    limit = result["memory_bandwidth_gbs"] * 1e9 / size  # every weight is read once per decoded token
    result["decode_vs_bandwidth"] = {"model_bytes": size, "bandwidth_limit_tokens_per_s": round(limit, 1),
                                     "fraction_of_limit": round(result["tokens"]["decode_tokens_per_s"] / limit, 3)}
    result["process"] = measure.process_usage(started_cpu, started_wall)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    return path


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, third) = plt.subplots(1, 3, figsize=(16, 4.5))
    labels, values = [], []
    for mode, entry in result["latency"].items():
        for condition, key in (("quiet", "quiet_ms"), ("loaded", "with_competing_load_ms")):
            labels.append(f"{mode}\n{condition}")
            values.append(entry[key]["p50"])
    left.bar(labels, values, color=["#2a7", "#c63", "#2a7", "#c63"][: len(values)])
    left.set_ylabel("text to dispatched call, p50 (ms)")
    left.set_title("latency, pinned vs unpinned")
    tokens = result["tokens"]
    right.bar(["prompt", "decode", "decode limit\n(bandwidth)"],
              [tokens["prompt_tokens_per_s"], tokens["decode_tokens_per_s"],
               result["decode_vs_bandwidth"]["bandwidth_limit_tokens_per_s"]], color=["#37a", "#37a", "#999"])
    right.set_ylabel("tokens per second")
    right.set_title("throughput")
    entries = {**{f"decoder:\n{k}": v for k, v in result.get("decoders", {}).items()},
               **{f"model:\n{k}": v for k, v in result.get("models", {}).items()}}
    names = list(entries)
    third.bar(names, [entries[n]["accuracy"] for n in names], color="#37a", label="accuracy")
    third.bar(names, [-entries[n]["false_actuations"] / max(entries[n]["cases"], 1) for n in names], color="#c33",
              label="false actuations (share of cases, below 0)")
    third.axhline(0, color="black", linewidth=0.8)
    third.set_title("dev commands through the agent's pipeline")
    third.tick_params(axis="x", rotation=60, labelsize=7)
    third.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from agent.paths import default_model

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF model (default: the installed default model)")
    parser.add_argument("--cases", type=Path, default=REPO.parent / "shared" / "eval" / "dev.jsonl",
                        help="eval-format JSON lines whose texts are the benchmark's commands")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--no-json-tool", action="store_true",
                        help="skip the JSON tool-calling baseline (the slowest part: the base model, unconstrained)")
    parser.add_argument("--compare", type=Path, nargs="*", default=None, metavar="GGUF",
                        help="other models to score side by side (default: the pruning sweep's builds beside the model)")
    args = parser.parse_args(argv)
    path = run(args.model or default_model(), args.cases, max(1, args.repeats), args.out, json_tool=not args.no_json_tool,
               compare_models=args.compare)
    print(json.dumps(json.loads(path.read_text()), indent=2))
    print(f"written: {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

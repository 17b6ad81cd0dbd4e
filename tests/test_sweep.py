"""The pruning sweep: its rule for the recommended removal, its variants, and a tiny sweep end to end."""

import json
from pathlib import Path

from agent.toolchain.build import templates_hash
from agent.toolchain.cli import built_from
from agent.toolchain.recipe import load_recipe
from agent.toolchain.sweep import SweepConfig, recommend, sweep, variant
from tests.conftest import REPO


def row(removed, exact_match, healed=True, quantization="recipe"):
    return {"removed": removed, "exact_match": exact_match, "healed": healed, "quantization": quantization}


def test_recommends_the_most_removed_blocks_within_tolerance_of_the_best():
    rows = [row(0, 0.880), row(3, 0.853), row(5, 0.851), row(5, 0.95, healed=False), row(7, 0.99, quantization="f16")]
    assert recommend(rows, 0.01) == 0  # unhealed and F16 rows do not count
    assert recommend(rows, 0.03) == 5
    assert recommend([row(0, 0.88), row(3, 0.875), row(5, 0.86)], 0.01) == 3


def test_variants_keep_the_recipe_name_for_its_own_pruning():
    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    assert variant(recipe, recipe.prune.remove).name == "tiny"
    assert variant(recipe, 0).name == "tiny-remove0" and variant(recipe, 0).prune.remove == 0
    unhealed = variant(recipe, recipe.prune.remove, heal=False)
    assert unhealed.name == "tiny-remove2-unhealed" and unhealed.heal.steps == 0


def test_tiny_sweep_writes_rows_plot_and_recommendation(registry, tmp_path):
    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    path = sweep(recipe, SweepConfig(removals=(2,), unhealed=False, other_quantizations=()), registry,
                 REPO / "models" / "templates", tmp_path, progress=False)
    summary = json.loads(path.read_text())
    assert [(r["removed"], r["quantization"]) for r in summary["rows"]] == [(2, "recipe"), (2, "f16")]
    assert all(r["blocks"] == 4 and r["base_blocks"] == 6 and 0 <= r["exact_match"] <= 1 for r in summary["rows"])
    for r in summary["rows"]:  # the safety figures beside accuracy, with and without abstaining
        assert r["false_actuations"] <= r["false_actuations_without_abstaining"] <= r["negatives"]
        assert r["wrong_actuations"] <= r["wrong_actuations_without_abstaining"]
        assert r["abstained_on_commands"] >= 0 and 0 <= r["exact_match_without_abstaining"] <= 1
    assert summary["recommended_removal"] == 2 and summary["heldout_examples"] == recipe.evaluate.max_examples
    assert (path.parent / "sweep.png").stat().st_size > 0
    assert summary["complete"] is True
    f16_recipe, templates = built_from(Path(summary["rows"][1]["model"]))  # names how it was made, not the cache's
    assert f16_recipe["quantize"]["ftype"] == "f16" and f16_recipe["prune"]["remove"] == 2
    assert templates == templates_hash(REPO / "models" / "templates")


def test_a_sweep_that_fails_keeps_the_rows_measured_before(registry, tmp_path, monkeypatch):
    import pytest

    from agent.errors import ModelError
    from agent.toolchain import build as build_module

    real_build = build_module.build

    def build_then_fail(plan, *args, **kwargs):
        if plan.prune.remove == 2:
            raise ModelError("out of disk")
        return real_build(plan, *args, **kwargs)

    monkeypatch.setattr(build_module, "build", build_then_fail)
    recipe = load_recipe(REPO / "models" / "recipes" / "tiny.yaml")
    with pytest.raises(ModelError):
        sweep(recipe, SweepConfig(removals=(1, 2), unhealed=False, other_quantizations=()), registry,
              REPO / "models" / "templates", tmp_path, progress=False)
    summary = json.loads((tmp_path / "sweep-tiny" / "sweep.json").read_text())
    assert summary["complete"] is False and summary["recommended_removal"] is None
    assert [(r["removed"], r["quantization"]) for r in summary["rows"]] == [(1, "recipe"), (1, "f16")]

"""The pruning sweep: one recipe built with several numbers of removed blocks, compared.

Every variant is a full build, all sharing the recipe's stage cache (a rerun
only evaluates; pruning after fine-tuning, the variants share one fine-tune).
Each is also quantized to F16 and evaluated, so the report shows what pruning
and what 4-bit quantization cost apart. The recipe's own pruning is
additionally built without healing, and quantized to the other 4-bit types.
The recommendation follows the issue's rule: the most aggressive pruning
whose held-out accuracy is within `tolerance` of the best variant's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from agent.atomic import write_text
from agent.registry import Registry
from agent.toolchain.quantize import QuantizeConfig, quantize
from agent.toolchain.recipe import Recipe


@dataclass(frozen=True)
class SweepConfig:
    removals: tuple[int, ...] = (0, 3, 5, 7)
    unhealed: bool = True                               # also the recipe's pruning without healing
    other_quantizations: tuple[str, ...] = ("q4_0", "q4_k_m", "iq4_nl")  # on the recipe's own pruning, if not its own
    tolerance: float = 0.01                             # accuracy a removal may lose against the best


def variant(recipe: Recipe, remove: int, heal: bool = True) -> Recipe:
    """The recipe with `remove` blocks removed; the recipe's own setting keeps its name, so the sweep
    reuses (and re-evaluates) the model the recipe built, in the same models directory."""
    name = recipe.name if remove == recipe.prune.remove else f"{recipe.name}-remove{remove}"
    changed = dataclasses.replace(recipe, name=name, prune=dataclasses.replace(recipe.prune, remove=remove))
    if not heal:
        changed = dataclasses.replace(changed, name=f"{recipe.name}-remove{remove}-unhealed",
                                      heal=dataclasses.replace(recipe.heal, steps=0))
    return changed


def recommend(rows: list[dict], tolerance: float) -> int:
    """The largest removal (healed, recipe quantization) within `tolerance` of the best accuracy."""
    healed = [r for r in rows if r["healed"] and r["quantization"] == "recipe"]
    best = max(r["exact_match"] for r in healed)
    return max(r["removed"] for r in healed if r["exact_match"] >= best - tolerance - 1e-9)


def sweep(recipe: Recipe, config: SweepConfig, registry: Registry, templates_dir: Path, out_dir: Path,
          progress: bool = True) -> Path:
    from agent.templates import load_templates
    from agent.toolchain.build import build, provenance, templates_hash
    from agent.toolchain.evaluate import evaluate
    from agent.toolchain.data import build_dataset

    heldout = list(build_dataset(recipe.data, registry, load_templates(templates_dir, registry)).heldout)
    heldout = heldout[: recipe.evaluate.max_examples]
    templates_sha = templates_hash(templates_dir)
    plans = [(variant(recipe, n), n, True) for n in sorted(set(config.removals))]
    if config.unhealed and recipe.prune.remove:
        plans.append((variant(recipe, recipe.prune.remove, heal=False), recipe.prune.remove, False))
    summary_dir = out_dir / f"sweep-{recipe.name}"
    summary_dir.mkdir(parents=True, exist_ok=True)
    summary_path = summary_dir / "sweep.json"
    rows: list[dict] = []

    def write(complete: bool) -> None:
        """Rewritten after every variant, so that a crash or an interrupt keeps the rows measured so far."""
        summary = {"recipe": recipe.name, "recipe_quantization": recipe.quantize.ftype,
                   "config": dataclasses.asdict(config), "heldout_examples": len(heldout), "complete": complete,
                   "rows": rows, "recommended_removal": recommend(rows, config.tolerance) if complete else None}
        write_text(summary_path, json.dumps(summary, indent=2) + "\n")

    for plan, removed, healed in plans:
        # one cache for every variant: with pruning after fine-tuning they share the fine-tune
        result = build(plan, registry, templates_dir, out_dir / plan.name, progress=progress,
                       cache=out_dir / recipe.name / "cache")
        report = json.loads(result.report.read_text())
        rows.append(_row(removed, healed, "recipe", result.model, report["evaluation"], report))
        others = [q for q in config.other_quantizations if q != recipe.quantize.ftype]
        extra = ["f16"] + (others if removed == recipe.prune.remove and healed else [])
        for ftype in extra:
            qconfig = QuantizeConfig(ftype=ftype, embedding_type="" if ftype == "f16" else recipe.quantize.embedding_type)
            # each file names the recipe that gives it: this variant's, quantized this way
            path = quantize(result.exported, out_dir / plan.name / f"{plan.name}-{ftype}.gguf", qconfig,
                            provenance(dataclasses.replace(plan, quantize=qconfig), templates_sha))
            rows.append(_row(removed, healed, ftype, path, evaluate(path, registry, heldout), report))
            if progress:
                print(f"[sweep] {plan.name} {ftype}: exact match {rows[-1]['exact_match']:.3f}", flush=True)
        write(complete=False)
    write(complete=True)
    plot(rows, summary_dir / "sweep.png", recipe.name)
    return summary_path


def _row(removed: int, healed: bool, quantization: str, model: Path, evaluation: dict, report: dict) -> dict:
    return {"removed": removed, "healed": healed, "quantization": quantization, "model": str(model),
            "mib": round(model.stat().st_size / 2**20, 1), "blocks": report["blocks"],
            "base_blocks": report["base_blocks"], "exact_match": evaluation["exact_match"],
            "false_actuations": evaluation["false_actuations"], "negatives": evaluation["negatives"],
            "wrong_actuations": evaluation["wrong_actuations"],
            "abstained_on_commands": evaluation["abstained_on_commands"],
            "exact_match_without_abstaining": evaluation["exact_match_without_abstaining"],
            "false_actuations_without_abstaining": evaluation["false_actuations_without_abstaining"],
            "wrong_actuations_without_abstaining": evaluation["wrong_actuations_without_abstaining"],
            "decode_tokens_per_second": evaluation["decode_tokens_per_second"],
            "output_tokens_per_command": evaluation["output_tokens_per_command"],
            "heal": report.get("heal"), "build_seconds": report.get("total_seconds"),
            "build_seconds_from_scratch": report.get("from_scratch_seconds")}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (acc, speed) = plt.subplots(1, 2, figsize=(10, 4))
    for quantization, style in (("recipe", "o-"), ("f16", "s--")):
        series = sorted((r["removed"], r["exact_match"], r["decode_tokens_per_second"]) for r in rows
                        if r["healed"] and r["quantization"] == quantization)
        if series:
            x, a, s = zip(*series)
            label = "4-bit (recipe)" if quantization == "recipe" else "F16"
            acc.plot(x, a, style, label=label)
            speed.plot(x, s, style, label=label)
    for r in rows:
        if not r["healed"] and r["quantization"] == "recipe":
            acc.plot([r["removed"]], [r["exact_match"]], "rx", markersize=9, label="not healed")
    acc.set(xlabel="decoder blocks removed", ylabel="held-out exact match", title=f"{title}: accuracy")
    speed.set(xlabel="decoder blocks removed", ylabel="decode tokens/s", title="decode speed (eval loop)")
    for ax in (acc, speed):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""`vehicle-agent-toolchain`: build a model from a recipe."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agent.errors import AgentError

REPO = Path(__file__).resolve().parents[2]


def built_from(model: Path) -> tuple[dict | None, str | None]:
    """The recipe and the templates hash a model was built from, as its metadata records them."""
    from gguf import GGUFReader

    from agent import modelkeys

    fields = GGUFReader(str(model)).fields
    recipe, templates = fields.get(modelkeys.RECIPE), fields.get(modelkeys.TEMPLATES_SHA)
    return (json.loads(recipe.contents()) if recipe else None), (templates.contents() if templates else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vehicle-agent-toolchain")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="run every stage of a recipe")
    p.add_argument("--recipe", required=True, type=Path)
    p.add_argument("--out", type=Path, default=None, help="output directory (default: the model cache, $VEHICLE_AGENT_HOME/models)")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when the recipe's model is already built from this recipe and these templates, "
                        "and verifies")
    p.add_argument("--templates", type=Path, default=REPO / "models" / "templates")
    s = sub.add_parser("sweep", help="build the recipe with several numbers of removed blocks and compare them")
    s.add_argument("--recipe", required=True, type=Path)
    s.add_argument("--remove", default="0,3,5,7", help="comma-separated numbers of blocks to remove (default: 0,3,5,7)")
    s.add_argument("--no-unhealed", action="store_true", help="skip the recipe's pruning built without healing")
    s.add_argument("--out", type=Path, default=None, help="models directory (default: the model cache)")
    s.add_argument("--templates", type=Path, default=REPO / "models" / "templates")
    c = sub.add_parser("clean-cache", help="delete a recipe's stage cache (its model stays; the next build runs "
                                           "every stage again)")
    c.add_argument("--recipe", required=True, type=Path)
    c.add_argument("--out", type=Path, default=None, help="models directory (default: the model cache)")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "clean-cache":
        return _clean_cache(args)
    from agent.registry import load_registry
    from agent.toolchain.build import build, templates_hash
    from agent.toolchain.recipe import load_recipe, same_recipe

    from agent import manifest, paths
    from agent.voice.domain import speech_lm_path

    try:
        recipe = load_recipe(args.recipe)
        out = (args.out or paths.models_dir()) / recipe.name
        existing = out / f"{recipe.name}.gguf"
        speech = speech_lm_path(existing)
        if args.if_missing and existing.is_file():
            if not paths.build_report(existing).is_file():  # its cached stages make the rerun quick
                print(f"model: {existing} has no build report (its build stopped before the end): resuming",
                      flush=True)
            elif speech.is_file() or not recipe.speech.enabled:
                manifest.verify(existing)
                if recipe.speech.enabled:
                    manifest.verify(speech)
                recorded_recipe, recorded_templates = built_from(existing)
                if same_recipe(recorded_recipe, recipe) and recorded_templates == templates_hash(args.templates):
                    print(f"model: {existing} (already built)")
                    return 0
                print(f"model: {existing} was built from another version of {args.recipe} or of the templates: "
                      "rebuilding", flush=True)
        result = build(recipe, load_registry(), args.templates, out)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {result.model}\nreport: {result.report}")
    cache = out / "cache"
    print(f"cache: {cache} ({_gib(cache):.1f} GiB; `vehicle-agent-toolchain clean-cache --recipe {args.recipe}` "
          "deletes it)")
    return 0


def _gib(directory: Path) -> float:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()) / 2**30


def _clean_cache(args) -> int:
    import shutil

    from agent import paths
    from agent.toolchain.recipe import load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cache = (args.out or paths.models_dir()) / recipe.name / "cache"
    if not cache.is_dir():
        print(f"cache: {cache} does not exist; nothing to delete")
        return 0
    size = _gib(cache)
    shutil.rmtree(cache)
    print(f"cache: deleted {cache} ({size:.1f} GiB)")
    return 0


def _sweep(args) -> int:
    from agent import paths
    from agent.registry import load_registry
    from agent.toolchain.recipe import load_recipe
    from agent.toolchain.sweep import SweepConfig, sweep

    try:
        removals = tuple(int(n) for n in args.remove.split(","))
    except ValueError:
        print(f"error: --remove takes comma-separated whole numbers, not {args.remove!r}", file=sys.stderr)
        return 2
    if any(n < 0 for n in removals):
        print("error: --remove cannot be negative", file=sys.stderr)
        return 2
    try:
        recipe = load_recipe(args.recipe)
        path = sweep(recipe, SweepConfig(removals=removals, unhealed=not args.no_unhealed), load_registry(),
                     args.templates, args.out or paths.models_dir())
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"sweep: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`vehicle-agent-toolchain`: build a model from a recipe."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.errors import AgentError

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vehicle-agent-toolchain")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="run every stage of a recipe")
    p.add_argument("--recipe", required=True, type=Path)
    p.add_argument("--out", type=Path, default=None, help="output directory (default: the model cache, $VEHICLE_AGENT_HOME/models)")
    p.add_argument("--if-missing", action="store_true", help="do nothing when the recipe's model is already built and verifies")
    p.add_argument("--templates", type=Path, default=REPO / "models" / "templates")
    s = sub.add_parser("sweep", help="build the recipe with several numbers of removed blocks and compare them")
    s.add_argument("--recipe", required=True, type=Path)
    s.add_argument("--remove", default="0,3,5,7", help="comma-separated numbers of blocks to remove (default: 0,3,5,7)")
    s.add_argument("--no-unhealed", action="store_true", help="skip the recipe's pruning built without healing")
    s.add_argument("--out", type=Path, default=None, help="models directory (default: the model cache)")
    s.add_argument("--templates", type=Path, default=REPO / "models" / "templates")
    args = parser.parse_args(argv)
    if args.command == "sweep":
        return _sweep(args)
    from agent.registry import load_registry
    from agent.toolchain.build import build
    from agent.toolchain.recipe import load_recipe

    from agent import manifest, paths
    from agent.voice.domain import speech_lm_path

    try:
        recipe = load_recipe(args.recipe)
        out = (args.out or paths.models_dir()) / recipe.name
        existing = out / f"{recipe.name}.gguf"
        speech = speech_lm_path(existing)
        if args.if_missing and existing.is_file() and (speech.is_file() or not recipe.speech.enabled):
            manifest.verify(existing)
            if recipe.speech.enabled:
                manifest.verify(speech)
            print(f"model: {existing} (already built)")
            return 0
        result = build(recipe, load_registry(), args.templates, out)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {result.model}\nreport: {result.report}")
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

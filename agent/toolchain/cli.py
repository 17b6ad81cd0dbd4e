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
    args = parser.parse_args(argv)
    from agent.registry import load_registry
    from agent.toolchain.build import build
    from agent.toolchain.recipe import load_recipe

    from agent import manifest, paths

    try:
        recipe = load_recipe(args.recipe)
        out = (args.out or paths.models_dir()) / recipe.name
        existing = out / f"{recipe.name}.gguf"
        if args.if_missing and existing.is_file():
            manifest.verify(existing)
            print(f"model: {existing} (already built)")
            return 0
        result = build(recipe, load_registry(), args.templates, out)
    except AgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model: {result.model}\nreport: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

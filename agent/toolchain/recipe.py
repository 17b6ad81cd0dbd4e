"""A recipe: the frozen configuration of every stage, read from YAML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.errors import ConfigError
from agent.toolchain.data import DataConfig
from agent.toolchain.finetune import FinetuneConfig
from agent.toolchain.heal import HealConfig
from agent.toolchain.model import TinyConfig
from agent.toolchain.prune import PruneConfig
from agent.toolchain.vocab import VocabConfig
from agent.toolchain.quantize import QuantizeConfig
from agent.toolchain.speech import SpeechConfig


@dataclass(frozen=True)
class EvalConfig:
    max_examples: int = 400  # held-out examples decoded by llama.cpp after quantization


@dataclass(frozen=True)
class Recipe:
    name: str
    base: str = "gemma3-270m"          # or "tiny": a random model of the same architecture
    max_train_examples: int = 0        # 0: all
    data: DataConfig = field(default_factory=DataConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)
    vocab: VocabConfig = field(default_factory=VocabConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    heal: HealConfig = field(default_factory=HealConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc}") from None
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(Recipe)}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{path}: unknown recipe key {key!r} (known: {', '.join(hints)})")
        default = hints[key].default_factory() if hints[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            known = {f.name for f in dataclasses.fields(default)}
            unknown = set(value or {}) - known
            if unknown:
                raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} in {key!r} (known: {', '.join(sorted(known))})")
            kwargs[key] = dataclasses.replace(default, **(value or {}))
        else:
            kwargs[key] = value
    if "name" not in kwargs:
        kwargs["name"] = path.stem
    return Recipe(**kwargs)

"""A recipe: the frozen configuration of every stage, read from YAML."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.errors import ConfigError
from agent.toolchain.data import DataConfig
from agent.toolchain.finetune import DROPOUT_SHAPES, FinetuneConfig
from agent.toolchain.heal import HealConfig
from agent.toolchain.model import TinyConfig
from agent.toolchain.prune import PruneConfig
from agent.toolchain.vocab import VocabConfig
from agent.toolchain.quantize import FTYPES, GGML_TYPES, QuantizeConfig
from agent.toolchain.speech import SpeechConfig


BASES = ("gemma3-270m", "tiny")
# Which numbers a recipe may hold ("section.field"); every other number must be >= 0.
FRACTIONS = {"data.heldout_fraction", "data.multi_call_fraction", "data.out_of_range_rate", "data.words_rate",
             "data.negated_rate", "data.contrast_rate", "speech.discount_mass"}
POSITIVE = {"data.samples_per_template", "vocab.general_words", "prune.max_block", "prune.calibration_examples",
            "prune.batch_size", "heal.batch_size", "heal.temperature", "heal.threads", "finetune.steps",
            "finetune.batch_size", "finetune.learning_rate", "finetune.threads", "finetune.max_length",
            "quantize.threads", "evaluate.max_examples", "speech.samples_per_template", "tiny.hidden_size",
            "tiny.intermediate_size", "tiny.num_hidden_layers", "tiny.num_attention_heads",
            "tiny.num_key_value_heads", "tiny.head_dim"}
# Fractions that must stay below 1 (dropping every input would train nothing).
BELOW_ONE = {"finetune.lora_dropout"}
# Settings that may be null (their default), else a whole number >= 0.
OPTIONAL_COUNTS = {"heal.blocks_before_cut"}
CHOICES = {"quantize.ftype": tuple(FTYPES), "quantize.embedding_type": ("", *GGML_TYPES),
           "finetune.lora_dropout_shape": DROPOUT_SHAPES}


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
    return recipe_from_mapping(raw, path)


def recipe_from_mapping(raw, source: str | Path) -> Recipe:
    """A recipe from its settings (a recipe file's YAML, or the JSON a built model records), checked;
    settings it leaves out take their defaults. source names it in errors."""
    path = Path(source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of stage names to settings, not {type(raw).__name__}")
    kwargs = {}
    hints = {f.name: f for f in dataclasses.fields(Recipe)}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{path}: unknown recipe key {key!r} (known: {', '.join(hints)})")
        default = hints[key].default_factory() if hints[key].default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{path}: {key!r} must be a mapping of settings, not {value!r}")
            known = {f.name for f in dataclasses.fields(default)}
            unknown = set(value or {}) - known
            if unknown:
                raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} in {key!r} (known: {', '.join(sorted(known))})")
            section = dataclasses.replace(default, **(value or {}))
            for f in dataclasses.fields(section):
                _check_value(path, f"{key}.{f.name}", getattr(section, f.name), f.default)
            kwargs[key] = section
        else:
            kwargs[key] = value
    if "name" not in kwargs:
        kwargs["name"] = path.stem
    if kwargs.get("base", Recipe.base) not in BASES:
        raise ConfigError(f"{path}: base must be one of {', '.join(BASES)}, not {kwargs['base']!r}")
    _check_value(path, "max_train_examples", kwargs.get("max_train_examples", 0), 0)
    finetune = kwargs.get("finetune", FinetuneConfig())
    if finetune.lora_first_block and not finetune.lora_rank:
        raise ConfigError(f"{path}: finetune.lora_first_block needs LoRA (finetune.lora_rank above 0): a full "
                          f"fine-tune would leave the blocks below it untrained without saying so")
    heal, prune = kwargs.get("heal", HealConfig()), kwargs.get("prune", PruneConfig())
    if heal.steps and not heal.kl_weight and not (heal.label_weight and prune.after_finetune):
        raise ConfigError(f"{path}: heal.kl_weight 0 leaves the heal only the true answers' cross-entropy, "
                          f"which needs heal.label_weight above 0 and prune.after_finetune (the answers)")
    return Recipe(**kwargs)


def same_recipe(recorded: dict | None, recipe: Recipe) -> bool:
    """Whether the recipe a model records is this one. A setting added since the model was built counts
    as the same when this recipe leaves it at its default, which reproduces the older build."""
    if not isinstance(recorded, dict):
        return False
    try:
        then = recipe_from_mapping(recorded, "the model's recorded recipe")
    except (ConfigError, TypeError):
        return False
    normal = lambda r: json.loads(json.dumps(r.to_json()))  # tuples and lists compare alike
    return normal(then) == normal(recipe)


def _check_value(path: Path, name: str, value, default) -> None:
    """Refuse a setting of the wrong type or out of its range here, not an hour into the build."""
    def refuse(why: str):
        raise ConfigError(f"{path}: {name} {why}, not {value!r}")

    if name in OPTIONAL_COUNTS:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            refuse("must be null or a whole number, 0 or more")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("must be true or false")
        return
    if isinstance(default, (int, float)):
        wanted = int if isinstance(default, int) else (int, float)
        if isinstance(value, bool) or not isinstance(value, wanted):
            refuse("must be an integer" if wanted is int else "must be a number")
        if name in FRACTIONS and not 0 <= value <= 1:
            refuse("must be between 0 and 1")
        if name in BELOW_ONE and not 0 <= value < 1:
            refuse("must be 0 or more and below 1")
        if name in POSITIVE and value <= 0:
            refuse("must be above 0")
        if value < 0:
            refuse("must not be negative")
        return
    if isinstance(default, str) and not isinstance(value, str):
        refuse("must be text")
    if name in CHOICES and value not in CHOICES[name]:
        refuse(f"must be one of {', '.join(repr(c) for c in CHOICES[name])}")

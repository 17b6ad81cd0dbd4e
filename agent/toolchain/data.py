"""Stage 1, data: phrase templates -> training and held-out examples.

Pure function of its config: the same seed gives the same examples. The split
is by template (a whole phrasing is either trained on or held out), so the
held-out score measures phrasings the model never saw. Out-of-range values
are transcribed faithfully: the model reports what was asked, the safety
policy refuses it later.

Each template's side of the split and its sentences depend only on the seed
and the template itself, not on the templates around it: adding or editing a
template leaves every other template where it was, so two builds that differ
by a few templates are measured on the same held-out phrasings.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from typing import Any

from agent.decoding import Call
from agent.registry import ArgSpec, Registry
from agent.templates import Slot, Template, TemplateSet, is_symbolic, resolve_fixed, sample, speak_number
from agent.textnorm import normalize

# Bump when the same config and templates would give other examples: cached stages key on it.
DATA_FORMAT = 2  # 2: split and sentences drawn per template

JOINERS = (" and ", " and then ", " and also ", " then ", " plus ")

# A command said with one of these in front asks for nothing: "dont unlock the doors".
NEGATORS = ("dont ", "do not ", "please dont ", "please do not ")
# First words that make a training command an imperative a negator can go in front of. Not "keep",
# "leave" or "let": "dont leave the doors unlocked" is a command (lock them).
IMPERATIVE_VERBS = frozenset(
    "activate adjust blast boost bring bump call cancel change close connect cool crank crack cut decrease "
    "dial dim disable drop enable end engage find flip fold give go heat increase kill lift lock lower "
    "mute navigate open pause play pop put raise reduce resume ring roll run set show shut skip slide "
    "start stop switch take tune turn unfold unlock warm wind".split())


@dataclass(frozen=True)
class DataConfig:
    seed: int = 1234
    heldout_fraction: float = 0.25      # of each function's templates (and of each negative category)
    samples_per_template: int = 24
    negative_ratio: float = 0.34        # negatives per positive (>= 1 in 3)
    multi_call_fraction: float = 0.12   # positives joined two at a time
    out_of_range_rate: float = 0.06     # numbers sampled outside their range
    words_rate: float = 0.5             # numbers spoken as words rather than digits
    negated_rate: float = 0.0           # training commands also said negated ("dont ..."), as negatives, per command
    contrast_rate: float = 0.0          # share of the training commands' contrast pairs (`contrast`) also trained on
    # The prompt is the sentence with a space in front, so a word is the same token first or later in it
    # (CallCodec.prompt_text); the model records it (modelkeys.PROMPT_LEADING_SPACE) for the daemon.
    leading_space: bool = False


@dataclass(frozen=True)
class Example:
    text: str                 # normalised command text
    calls: tuple[Call, ...]   # spoken arguments; symbolic values kept (on/max/up...)
    template: str             # key of the template (or "+"-joined keys)
    kind: str                 # single, multi, relative, negative, out_of_range

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "calls": [asdict(c) for c in self.calls], "template": self.template, "kind": self.kind}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Example":
        return cls(data["text"], tuple(Call(c["function"], c["args"]) for c in data["calls"]), data["template"], data["kind"])


@dataclass(frozen=True)
class Dataset:
    train: tuple[Example, ...]
    heldout: tuple[Example, ...]


def _template_seed(seed: int, template: Template) -> str:
    """What a template's split and sentences are drawn from: the seed and the template's own text."""
    fixed = ",".join(f"{k}={v}" for k, v in sorted(template.fixed.items()))
    return f"{seed}|{template.function or 'negative/' + template.category}|{template.text}|{fixed}"


def _held_score(seed: int, template: Template) -> float:
    digest = hashlib.sha256(_template_seed(seed, template).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_templates(templates: list[Template], fraction: float, seed: int) -> tuple[list[Template], list[Template]]:
    """Hold out each template whose hash falls below fraction (so about that share of the list, and
    at least one of three or more); where a template lands never depends on the others."""
    scores = [_held_score(seed, t) for t in templates]
    held = {i for i, score in enumerate(scores) if score < fraction}
    if not held and fraction > 0 and len(templates) >= 3:
        held = {scores.index(min(scores))}
    return ([t for i, t in enumerate(templates) if i not in held], [t for i, t in enumerate(templates) if i in held])


def build_dataset(config: DataConfig, registry: Registry, templates: TemplateSet) -> Dataset:
    rng = random.Random(config.seed)
    train_t, held_t = [], []
    for spec in registry:
        tr, he = split_templates(templates.for_function(spec.name), config.heldout_fraction, config.seed)
        train_t += tr
        held_t += he
    categories = sorted({t.category for t in templates.negatives})
    neg_train, neg_held = [], []
    for category in categories:
        tr, he = split_templates([t for t in templates.negatives if t.category == category], config.heldout_fraction,
                                 config.seed)
        neg_train += tr
        neg_held += he
    train = _examples(config, registry, templates, train_t, neg_train, rng)
    heldout = _examples(config, registry, templates, held_t, neg_held, rng)
    train = tuple(_with_contrasts(config, registry, _with_negated(config, train)))
    # Two templates can produce the same sentence ("take me to work"); held out,
    # it would measure memory, not a phrasing the model never saw.
    seen = {e.text for e in train}
    return Dataset(train=train, heldout=tuple(e for e in heldout if e.text not in seen))


def _examples(config, registry, templates, positive_t, negative_t, rng) -> list[Example]:
    positives = []
    for t in positive_t:
        own = random.Random(_template_seed(config.seed, t))
        positives += [_positive(config, registry, templates, t, own) for _ in range(config.samples_per_template)]
    n_multi = int(len(positives) * config.multi_call_fraction)
    multis = []
    for _ in range(n_multi):
        a, b = rng.sample(positives, 2)
        if a.calls[0].function == b.calls[0].function or a.kind == "out_of_range" or b.kind == "out_of_range":
            continue
        multis.append(Example(a.text + rng.choice(JOINERS) + b.text, a.calls + b.calls, f"{a.template}+{b.template}", "multi"))
    n_neg = int((len(positives) + len(multis)) * config.negative_ratio)
    negatives = []
    if negative_t:
        per_template = max(1, -(-n_neg // len(negative_t)))
        for t in negative_t:  # repeats are kept: they weight negatives to the configured ratio
            own = random.Random(_template_seed(config.seed, t))
            for _ in range(per_template):
                negatives.append(Example(normalize(sample(t.tree, own, lambda slot: "")), (), t.key, "negative"))
    out = positives + multis + negatives
    rng.shuffle(out)
    return out


def _with_negated(config: DataConfig, examples: list[Example]) -> list[Example]:
    """examples plus negatives made from its commands by a negator in front ("dont open the trunk"):
    the words of a command the car must not act on, shuffled in. Drawn from their own random stream,
    so the other examples stay as they were."""
    commands = [e for e in examples if e.kind in ("single", "relative") and e.text.split()[0] in IMPERATIVE_VERBS]
    count = int(config.negated_rate * len(commands))
    if not count:
        return examples
    rng = random.Random(f"{config.seed}|negated")
    out = examples + [Example(rng.choice(NEGATORS) + e.text, (), f"negated/{e.template}", "negative")
                      for e in rng.sample(commands, min(count, len(commands)))]
    rng.shuffle(out)
    return out


# Contrast pairs: a training command said with its deciding word swapped for the opposite, the answer
# flipped ("roll down the window" -> "roll up the window", open -> closed). Which words may decide
# depends on the argument: a direction or a change for a level or an amount, a switch for on/off.
def _both_ways(pairs: dict[str, str]) -> dict[str, str]:
    return pairs | {b: a for a, b in pairs.items()}


DIRECTION_WORDS = _both_ways({"up": "down", "raise": "lower", "increase": "decrease", "louder": "quieter",
                              "loud": "quiet", "brighter": "dimmer"})
# Only for the cabin: "my seat is too hot" asks for ventilation, "too cold" for heating.
CABIN_WORDS = _both_ways({"warmer": "cooler", "hotter": "colder", "hot": "cold"}) | {"colder": "warmer"}
# Switches, the word that turns a thing on first; named ones only for that argument.
_SWITCH_PAIRS = {"on": "off", "enable": "disable", "activate": "deactivate"}
_NAMED_SWITCH_PAIRS = {"open": {"open": "close"}, "locked": {"lock": "unlock"}, "folded": {"fold": "unfold"}}
SWITCH_WORDS = _both_ways(_SWITCH_PAIRS)
NAMED_SWITCH_WORDS = {name: _both_ways(pairs) for name, pairs in _NAMED_SWITCH_PAIRS.items()}
SWITCHES = frozenset(SWITCH_WORDS).union(*NAMED_SWITCH_WORDS.values())
# A switch word says the state it asks for: "turn on" is True (or on), never False (or 0).
SWITCHED_ON = frozenset(_SWITCH_PAIRS).union(*_NAMED_SWITCH_PAIRS.values())
# The symbolic values with an opposite: a direction, an end of the range.
OPPOSITE_SYMBOLS = _both_ways({"up": "down", "max": "min"})
# Sentences left alone: words naming the value itself ("turn it up to max" said the other way round
# still says "max"), and verbs whose particle is not the direction ("fogging up", "cool it off",
# "heat up the seat", "cut off the outside air", "fold the mirrors back out").
UNFLIPPED_WORDS = frozenset("max maximum maximize min minimum minimize full high highest low lowest top bottom percent "
                            "fog fogged fogging foggy condensation mist misted clear warm heat cool cooling chill "
                            "shut cut out no".split())


def _flip(arg: ArgSpec, value: Any) -> tuple[Any, dict[str, str]] | None:
    """(the opposite value, the words that may say it) for an argument with an opposite: a direction,
    an end of the range, on/off, a change by an amount; None for an absolute number or an enum."""
    if arg.type == "bool":
        return (not value), SWITCH_WORDS | NAMED_SWITCH_WORDS.get(arg.name, {})
    if arg.type not in ("int", "number"):
        return None
    if value in OPPOSITE_SYMBOLS and is_symbolic(arg, value):
        words = DIRECTION_WORDS | (NAMED_SWITCH_WORDS["open"] if arg.name == "open_percent" else {})
        return OPPOSITE_SYMBOLS[value], words
    if arg.on_value is not None and (value == "on" or value == 0):
        return (0 if value == "on" else "on"), SWITCH_WORDS
    if arg.delta_of and isinstance(value, (int, float)) and value:
        return -value, DIRECTION_WORDS
    return None


def contrast(registry: Registry, example: Example) -> Example | None:
    """The example said with its one deciding word swapped for the opposite and the one argument it
    decides flipped; None when the sentence has no such word, more than one, or the answer does not
    turn on it."""
    if example.kind not in ("single", "relative") or len(example.calls) != 1:
        return None
    call = example.calls[0]
    spec = registry.get(call.function)
    words = example.text.split()
    if UNFLIPPED_WORDS & set(words):
        return None
    flips = {name: flip for name, value in call.args.items() if (flip := _flip(spec.arg(name), value))}
    if len(flips) != 1:
        return None
    (name, (opposite, table)), = flips.items()
    if "cabin_temperature" in spec.name and "up" in table:
        table = table | CABIN_WORDS
    deciding = [i for i, w in enumerate(words) if w in table]
    if len(deciding) != 1:
        return None
    word = words[deciding[0]]
    if word in SWITCHES and (word in SWITCHED_ON) != (call.args[name] in (True, "on", "max")):
        return None  # "the seat heater on zero": the switch word does not say the value
    words[deciding[0]] = table[word]
    return Example(" ".join(words), (Call(call.function, call.args | {name: opposite}),),
                   f"contrast/{example.template}", example.kind)


def _with_contrasts(config: DataConfig, registry: Registry, examples: list[Example]) -> list[Example]:
    """examples plus contrast pairs of a share of its commands (`contrast`), which make the model read
    the word that decides the answer rather than the words around it. Their own random stream, so the
    other examples stay as they were."""
    if not config.contrast_rate:
        return examples
    rng = random.Random(f"{config.seed}|contrast")
    said = {e.text for e in examples}
    pairs = [c for e in examples if (c := contrast(registry, e)) is not None and c.text not in said]
    out = examples + rng.sample(pairs, int(config.contrast_rate * len(pairs)))
    rng.shuffle(out)
    return out


def _positive(config, registry, templates, template: Template, rng: random.Random) -> Example:
    spec = registry.get(template.function)
    slots = templates.slots.get(spec.name, {})
    values = templates.values.get(spec.name, {})
    words = rng.random() < config.words_rate
    args: dict[str, Any] = {}
    out_of_range = False

    def fill(slot: Slot) -> str:
        nonlocal out_of_range
        arg = spec.arg(slot.name)
        if slot.name in args:  # a slot used twice says the same value
            value = args[slot.name]
            return speak_number(value, rng, words) if arg.type in ("int", "number") else str(value)
        if arg.type in ("enum", "bool"):
            key = rng.choice(list(slots[arg.name]))
            args[arg.name] = resolve_fixed(arg, key) if arg.type == "bool" else key
            return rng.choice(slots[arg.name][key])
        if arg.type == "string":
            args[arg.name] = rng.choice(values[arg.name])
            return args[arg.name]
        phrases = slots.get(arg.name, {})
        if phrases and rng.random() < 0.4:
            key = rng.choice(list(phrases))
            args[arg.name] = resolve_fixed(arg, key)
            return rng.choice(phrases[key])
        value, outside = _sample_number(arg, slot.negative, config, rng)
        out_of_range |= outside
        args[arg.name] = value
        return speak_number(value, rng, words)

    text = normalize(sample(template.tree, rng, fill))
    for name, fixed in template.fixed.items():
        arg = spec.arg(name)
        value = fixed if is_symbolic(arg, fixed) else resolve_fixed(arg, fixed)
        args[name] = value
    kind = "out_of_range" if out_of_range else ("relative" if spec.relative else "single")
    return Example(text, (Call(spec.name, args),), template.key, kind)


def _sample_number(arg: ArgSpec, negative: bool, config: DataConfig, rng: random.Random) -> tuple[float | int, bool]:
    """A value on the argument's grid; sometimes (out_of_range_rate) beyond its range.

    For a relative argument the value is a magnitude (its sign comes from the
    template): usually small, and out of range means above the argument's max.
    """
    step = arg.step or 1
    lo, hi = arg.min, arg.max
    if arg.delta_of:
        lo, hi = step, min(hi, 5.0)
    outside = rng.random() < config.out_of_range_rate
    if outside:
        unit = max(step, 1) * (10 if arg.max - arg.min >= 50 else 1)
        above = arg.max + unit * rng.randint(1, 5)
        below = arg.min - unit * rng.randint(1, 5)
        value = above if arg.delta_of or below < 0 or rng.random() < 0.6 else below
    else:
        value = lo + step * rng.randint(0, int(round((hi - lo) / step)))
    value = int(round(value)) if arg.type == "int" else round(float(value), 3)
    return (-value if negative else value), outside

"""Phrase templates: parse the small hassil-like syntax and sample sentences from it.

Pure Python, no torch: the toolchain generates training data with it, and the
runtime derives the speech recognizer's vocabulary and the rule-based baseline
from the same files. See models/templates/README.md for the format.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from agent.errors import ConfigError
from agent.registry import ArgSpec, Registry

SYMBOLIC_VALUES = ("on", "max", "min", "up", "down")


# --- the syntax tree -------------------------------------------------------

@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Slot:
    name: str
    negative: bool = False


@dataclass(frozen=True)
class Seq:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: tuple[Seq, ...]
    optional: bool = False  # [x] is (x|)


Node = Union[Text, Slot, Seq, Alt]
_TOKEN = re.compile(r"[()\[\]|{}]|[^()\[\]|{}]+")


def parse(template: str) -> Seq:
    """The syntax tree of one template; ValueError names what is malformed."""
    tokens = _TOKEN.findall(template)
    pos = 0

    def seq(closers: str) -> tuple[Seq, str | None]:
        nonlocal pos
        items: list[Node] = []
        while pos < len(tokens):
            tok = tokens[pos]
            pos += 1
            if tok in closers:
                return Seq(tuple(items)), tok
            if tok in "([":
                close = ")" if tok == "(" else "]"
                options = []
                while True:
                    option, ended = seq("|" + close)
                    options.append(option)
                    if ended == close:
                        break
                    if ended is None:
                        raise ValueError(f"unclosed {tok!r} in {template!r}")
                items.append(Alt(tuple(options), optional=tok == "["))
            elif tok == "{":
                if pos + 1 >= len(tokens) or tokens[pos + 1] != "}":
                    raise ValueError(f"malformed slot in {template!r}")
                name, _, modifier = tokens[pos].strip().partition(":")
                if modifier not in ("", "neg"):
                    raise ValueError(f"unknown slot modifier {modifier!r} in {template!r}")
                items.append(Slot(name.strip(), negative=modifier == "neg"))
                pos += 2
            elif tok in ")]|}":
                raise ValueError(f"unexpected {tok!r} in {template!r}")
            else:
                items.append(Text(tok))
        return Seq(tuple(items)), None

    tree, ended = seq("")
    if ended is not None:
        raise ValueError(f"unexpected {ended!r} in {template!r}")
    return tree


def slots_of(node: Node) -> set[str]:
    if isinstance(node, Slot):
        return {node.name}
    if isinstance(node, Seq):
        return set().union(*(slots_of(i) for i in node.items)) if node.items else set()
    if isinstance(node, Alt):
        return set().union(*(slots_of(o) for o in node.options))
    return set()


def words_of(node: Node) -> set[str]:
    """Every word a template can produce outside its slots."""
    if isinstance(node, Text):
        return set(node.text.split())
    if isinstance(node, Seq):
        return set().union(*(words_of(i) for i in node.items)) if node.items else set()
    if isinstance(node, Alt):
        return set().union(*(words_of(o) for o in node.options))
    return set()


# --- the files --------------------------------------------------------------

@dataclass(frozen=True)
class Template:
    function: str  # "" for a negative
    index: int     # position within its function (or negative category)
    text: str
    tree: Seq
    fixed: dict[str, Any] = field(default_factory=dict)
    category: str = ""  # negatives: chitchat, questions, unsupported

    @property
    def key(self) -> str:
        return f"{self.function or 'negative/' + self.category}#{self.index}"


@dataclass(frozen=True)
class TemplateSet:
    templates: tuple[Template, ...]
    slots: dict[str, dict[str, dict[str, list[str]]]]  # function -> arg -> value -> phrases
    values: dict[str, dict[str, list[str]]]            # function -> arg -> sample strings

    def for_function(self, name: str) -> list[Template]:
        return [t for t in self.templates if t.function == name]

    @property
    def negatives(self) -> list[Template]:
        return [t for t in self.templates if not t.function]

    def vocabulary(self) -> set[str]:
        """Every word the templates, their slot phrases and sample values can produce."""
        words = set()
        for t in self.templates:
            words |= words_of(t.tree)
        for by_arg in list(self.slots.values()) + list(self.values.values()):
            for phrases in by_arg.values():
                for items in (phrases.values() if isinstance(phrases, dict) else [phrases]):
                    for phrase in items:
                        words |= set(str(phrase).split())
        return words


def load_templates(directory: str | Path, registry: Registry) -> TemplateSet:
    """Read and check every template file; ConfigError names the file and the problem."""
    directory = Path(directory)
    templates: list[Template] = []
    slots: dict = {}
    values: dict = {}
    seen: set[str] = set()
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ConfigError(f"no template files in {directory}")
    for path in files:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            for category, items in (data.get("negatives") or {}).items():
                for i, text in enumerate(items):
                    templates.append(Template("", i, text, parse(text), category=category))
            for name, body in (data.get("functions") or {}).items():
                spec = registry.get(name)
                if name in seen:
                    raise ValueError(f"function {name} appears twice")
                seen.add(name)
                fn_slots = {**(data.get("slots") or {}), **(body.get("slots") or {})}
                slots[name] = {a.name: _normalise_slot(a, fn_slots[a.name]) for a in spec.args if a.name in fn_slots}
                fn_values = {**(data.get("values") or {}), **(body.get("values") or {})}
                values[name] = {a.name: [str(v) for v in fn_values[a.name]] for a in spec.args if a.name in fn_values}
                for i, entry in enumerate(body.get("templates") or []):
                    text, fixed = (entry, {}) if isinstance(entry, str) else (entry["text"], dict(entry.get("args") or {}))
                    template = Template(name, i, text, parse(text), {str(k): v for k, v in fixed.items()})
                    _check(template, spec, slots[name], values[name])
                    templates.append(template)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    missing = [f.name for f in registry if f.name not in seen]
    if missing:
        raise ConfigError(f"{directory}: no templates for {', '.join(missing)}")
    return TemplateSet(tuple(templates), slots, values)


def _normalise_slot(arg: ArgSpec, phrases: dict) -> dict[str, list[str]]:
    out = {}
    for key, items in phrases.items():
        value = resolve_fixed(arg, key)
        out[str(value)] = [str(p) for p in items]
    return out


def _check(template: Template, spec, slots: dict, values: dict) -> None:
    used = slots_of(template.tree)
    for name in used | set(template.fixed):
        spec.arg(name)
    for name in template.fixed:
        resolve_fixed(spec.arg(name), template.fixed[name])
    for arg in spec.args:
        if arg.name in used and arg.type in ("enum", "bool") and arg.name not in slots:
            raise ValueError(f"{template.text!r}: no slot phrases for {arg.name}")
        if arg.name in used and arg.type == "string" and arg.name not in values:
            raise ValueError(f"{template.text!r}: no sample values for {arg.name}")
        always = arg.name in template.fixed or _always_has(template.tree, arg.name)
        if not always and not arg.has_default:
            raise ValueError(f"{template.text!r} ({spec.name}) does not always give {arg.name}")


def _always_has(node: Node, name: str) -> bool:
    if isinstance(node, Slot):
        return node.name == name
    if isinstance(node, Seq):
        return any(_always_has(i, name) for i in node.items)
    if isinstance(node, Alt):
        return not node.optional and all(_always_has(o, name) for o in node.options)
    return False


def resolve_fixed(arg: ArgSpec, value: Any) -> Any:
    """A template's fixed value (or slot key) as the argument's real value."""
    if arg.type == "bool":
        if isinstance(value, bool):
            return value
        return arg.parse(str(value))
    if is_symbolic(arg, value):
        return symbolic_value(arg, value)
    if arg.type in ("int", "number") and isinstance(value, str):
        return arg.check(arg.parse(value))
    return arg.check(value)


def is_symbolic(arg: ArgSpec, value: Any) -> bool:
    """on/max/min/up/down given for a numeric argument: a value the safety policy makes concrete."""
    return isinstance(value, str) and value in SYMBOLIC_VALUES and arg.type in ("int", "number")


def symbolic_value(arg: ArgSpec, word: str) -> float | int:
    """on/max/min/up/down as a number of this argument; ValueError where it has none."""
    if word == "on" and arg.on_value is not None:
        return arg.on_value
    if word == "max" and arg.max is not None:
        return arg.max
    if word == "min" and arg.min is not None:
        return arg.min
    if word in ("up", "down") and arg.vague_step is not None:
        return arg.vague_step if word == "up" else -arg.vague_step
    raise ValueError(f"{arg.name} has no {word!r} value")


# --- sampling ----------------------------------------------------------------

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """English words for 0 <= n < 1000."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    hundreds, rest = divmod(n, 100)
    return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")


def speak_number(value: float, rng: random.Random, words: bool) -> str:
    """A number as a driver says it: digits or words, decimals with "point"."""
    value = abs(value)
    whole = int(value)
    frac = round(value - whole, 6)
    if not words:
        return f"{value:g}"
    text = number_words(whole)
    if frac:
        digits = f"{frac:.6f}".rstrip("0").split(".")[1]
        text += " point " + " ".join(_ONES[int(d)] for d in digits)
    return text


def sample(tree: Node, rng: random.Random, fill) -> str:
    """One sentence from a tree; fill(slot) returns the text of a slot."""
    if isinstance(tree, Text):
        return tree.text
    if isinstance(tree, Slot):
        return fill(tree)
    if isinstance(tree, Seq):
        return "".join(sample(i, rng, fill) for i in tree.items)
    options = list(tree.options) + ([Seq(())] if tree.optional else [])
    return sample(rng.choice(options), rng, fill)

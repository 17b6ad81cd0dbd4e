"""Model output <-> vehicle calls, and the registry-constrained greedy decoder.

Output format, one call after another, then end of sequence:

    <MB_k> arg: value; arg: value<MB_j> arg: value</s>
    <MB_0></s>                                  (not a vehicle command)

Arguments appear in sorted order and only when the command gives them
(defaults are filled in later). Numbers may be written out or be one of the
symbolic values on/max/min/up/down, resolved later by the safety policy.
Numbers are never range-checked here: an out-of-range request must reach the
policy and be refused, not be forced into range by the decoder.

Targets are built by concatenating the token ids of fixed fragments (" level:",
";", " passenger", ...), and the decoder forces the same fragments, so training
and decoding agree token for token whatever the tokenizer would do to the whole
string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from agent.errors import DecodeError
from agent.registry import ArgSpec, FunctionSpec, Registry
from agent.templates import SYMBOLIC_VALUES, is_symbolic

NONE_TOKEN = "<MB_0>"
MAX_CALLS = 4
MAX_STRING_TOKENS = 24
_NUMBER_PREFIX = re.compile(r" ?(-?(\d{1,4}(\.\d{0,3})?)?)?")
_NUMBER = re.compile(r" ?-?\d{1,4}(\.\d{1,3})?")


class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...       # no BOS, specials not parsed
    def piece(self, token_id: int) -> str: ...          # the text the token stands for
    def token_id(self, name: str) -> int: ...           # id of a control token by name


def functional_tokens(registry: Registry) -> dict[str, str | None]:
    """Token name -> function (None for "not a vehicle command"), from the registry order."""
    out: dict[str, str | None] = {NONE_TOKEN: None}
    for index, spec in enumerate(registry, start=1):
        out[f"<MB_{index}>"] = spec.name
    return out


@dataclass(frozen=True)
class Call:
    """A decoded call: the arguments the command gave, possibly symbolic (on/max/up...)."""

    function: str
    args: dict[str, Any] = field(default_factory=dict)


def format_value(arg: ArgSpec, value: Any) -> str:
    if is_symbolic(arg, value):
        return value
    if arg.type == "bool":
        return "true" if value else "false"
    if arg.type == "int":
        return str(int(value))
    if arg.type == "number":
        return f"{float(value):g}"
    return str(value)


def parse_value(arg: ArgSpec, text: str) -> Any:
    text = text.strip()
    if arg.type in ("int", "number"):
        if text in SYMBOLIC_VALUES:
            return text
        try:
            return int(text) if arg.type == "int" and "." not in text else float(text)
        except ValueError:
            raise DecodeError(f"{arg.name}: {text!r} is not a number") from None
    if arg.type == "bool":
        if text not in ("true", "false"):
            raise DecodeError(f"{arg.name}: {text!r} is not true or false")
        return text == "true"
    return text


def symbolic_words(arg: ArgSpec) -> list[str]:
    words = []
    if arg.on_value is not None:
        words.append("on")
    if arg.min is not None and arg.max is not None and arg.vague_step is None:
        words += ["max", "min"]
    if arg.vague_step is not None:
        words += ["up", "down"]
    return words


class CallCodec:
    """Encodes calls as target token ids and builds constrained decoders, for one tokenizer."""

    def __init__(self, registry: Registry, tokenizer: Tokenizer, leading_space: bool = False):
        self.registry = registry
        self.tok = tokenizer
        self.leading_space = leading_space
        self.token_names = functional_tokens(registry)
        self.mb_ids = {name: tokenizer.token_id(name) for name in self.token_names}
        self.function_of_id = {self.mb_ids[n]: f for n, f in self.token_names.items()}
        self.none_id = self.mb_ids[NONE_TOKEN]
        self.eos_id = tokenizer.eos_id
        vocab = tokenizer.vocab_size
        self.pieces = [tokenizer.piece(i) for i in range(vocab)]
        special = set(self.function_of_id) | {self.eos_id}
        self._number_ids = np.array([i for i, p in enumerate(self.pieces)
                                     if p and i not in special and re.fullmatch(r"[ \d.\-]+", p)], dtype=np.int64)
        self._text_mask = np.zeros(vocab, dtype=bool)
        for i, p in enumerate(self.pieces):
            if p and i not in special and not any(ch in p for ch in ";:\n<"):  # ':' would start an argument name
                self._text_mask[i] = True
        self._functions_mask = np.zeros(vocab, dtype=bool)
        self._functions_mask[[self.mb_ids[n] for n, f in self.token_names.items() if f]] = True

    @lru_cache(maxsize=4096)
    def fragment(self, text: str) -> tuple[int, ...]:
        ids = tuple(self.tok.encode(text))
        if not ids:
            raise DecodeError(f"fragment {text!r} has no tokens")
        return ids

    def fragment_texts(self) -> list[str]:
        """Every fixed fragment the format uses (names, enum and symbolic values, separators)."""
        texts = [";", "\n", " true", " false", " ", "-", " -", "."] + [f" {d}" for d in range(10)] + [str(d) for d in range(10)]
        for spec in self.registry:
            for arg in spec.args:
                texts.append(f" {arg.name}:")
                texts += [f" {v}" for v in arg.values] + [f" {w}" for w in symbolic_words(arg)]
        return texts

    def prompt_text(self, text: str) -> str:
        """The text the prompt tokenizes. With leading_space every word is one token form wherever it
        stands: without it the sentence's first word ("mute" in "mute it") is another token than the
        same word after a space ("please mute"), and the model learns the two apart."""
        return " " + text if self.leading_space else text

    def prompt(self, text: str) -> list[int]:
        """The model input for a (normalised) command: its tokens, then a newline fragment."""
        return list(self.tok.encode(self.prompt_text(text))) + list(self.fragment("\n"))

    def encode(self, calls: list[Call]) -> list[int]:
        """Target ids for these calls, ending with end-of-sequence; [] calls -> the none token."""
        if not calls:
            return [self.none_id, self.eos_id]
        ids: list[int] = []
        for call in calls:
            spec = self.registry.get(call.function)
            ids.append(self.mb_ids[_token_name(self.token_names, spec.name)])
            for n, name in enumerate(sorted(call.args)):
                arg = spec.arg(name)
                if n:
                    ids += self.fragment(";")
                ids += self.fragment(f" {name}:")
                ids += self.fragment(" " + format_value(arg, call.args[name]))
        return ids + [self.eos_id]

    def decode_ids(self, ids: list[int]) -> list[Call]:
        """Parse a finished output (for tests and offline checks)."""
        decoder = self.decoder()
        for token in ids:
            if decoder.done:
                break
            if not decoder.allowed()[token]:
                raise DecodeError(f"token {token} ({self.pieces[token]!r}) is not allowed here")
            decoder.advance(token)
        return decoder.calls()

    def decoder(self) -> "ConstrainedDecoder":
        return ConstrainedDecoder(self)

    def mask_of(self, ids) -> np.ndarray:
        mask = np.zeros(len(self.pieces), dtype=bool)
        mask[list(ids)] = True
        return mask


def _token_name(names: dict[str, str | None], function: str) -> str:
    return next(n for n, f in names.items() if f == function)


class ConstrainedDecoder:
    """Greedy decoding state: which token ids may come next, given what came so far.

    States: "function" (a functional token or the end), "end" (only the end),
    "args" (after a call's functional token or value: an argument, another
    call, or the end), "forced" (inside one of a few fixed fragments: an
    argument name, an enum/bool/symbolic value), "value" (a number or string
    being written out).
    """

    def __init__(self, codec: CallCodec):
        self.c = codec
        self.done = False
        self._calls: list[tuple[FunctionSpec | None, dict[str, str]]] = []
        self._state = "function"
        self._candidates: list[tuple[tuple[int, ...], str, str]] = []  # (ids, kind, meaning)
        self._pos = 0
        self._arg: ArgSpec | None = None
        self._value = ""
        self._value_tokens = 0

    @property
    def writing_text(self) -> bool:
        """Inside a string value (a song, a place, a name), where another token is another text."""
        return self._state == "value" and self._arg.type == "string"

    # -- what may come next ----------------------------------------------
    def allowed(self) -> np.ndarray:
        c = self.c
        if self._state == "function":
            mask = c._functions_mask.copy() if len(self._calls) < MAX_CALLS else np.zeros_like(c._functions_mask)
            mask[c.none_id if not self._calls else c.eos_id] = True
            return mask
        if self._state == "end":
            return c.mask_of([c.eos_id])
        if self._state == "args":
            return self._after_value_mask()
        if self._state == "forced":
            mask = c.mask_of({ids[self._pos] for ids, _, _ in self._candidates if len(ids) > self._pos})
            if self._finished() is not None:  # a value that is a prefix of a longer one may end here
                mask |= self._after_value_mask(exclude=self._arg.name)
            return mask
        return self._value_mask()

    def _remaining(self, exclude: str | None = None) -> list[ArgSpec]:
        spec, given = self._calls[-1]
        return [a for a in spec.args if a.name not in given and a.name != exclude]

    def _after_value_mask(self, exclude: str | None = None) -> np.ndarray:
        c = self.c
        mask = c._functions_mask.copy() if len(self._calls) < MAX_CALLS else np.zeros_like(c._functions_mask)
        mask[c.eos_id] = True
        remaining = self._remaining(exclude)
        if remaining:
            _, given = self._calls[-1]
            if given or exclude:
                mask[c.fragment(";")[0]] = True
            else:  # the first argument follows the functional token directly
                mask |= c.mask_of({c.fragment(f" {a.name}:")[0] for a in remaining})
        return mask

    def _value_mask(self) -> np.ndarray:
        c, arg = self.c, self._arg
        mask = np.zeros(len(c.pieces), dtype=bool)
        complete = False
        if arg.type in ("int", "number"):
            for token in c._number_ids:
                if _NUMBER_PREFIX.fullmatch(self._value + c.pieces[token]):
                    mask[token] = True
            if not self._value:
                mask |= c.mask_of({ids[0] for ids in self._symbolic})
            complete = bool(_NUMBER.fullmatch(self._value))
        else:  # string
            if self._value_tokens < MAX_STRING_TOKENS:
                mask |= c._text_mask
            complete = bool(self._value.strip())
        if complete:
            mask |= self._after_value_mask(exclude=arg.name)
        return mask

    # -- taking a token ----------------------------------------------------
    def advance(self, token: int) -> None:
        c = self.c
        state = self._state
        if state == "end" or (state != "forced" and token == c.eos_id):
            self._end_value()
            self.done = True
        elif state == "function":
            function = c.function_of_id[token]
            self._calls.append((c.registry.get(function) if function else None, {}))
            self._state = "end" if function is None else "args"
        elif state == "args":
            self._take_after_value(token)
        elif state == "forced":
            self._take_forced(token)
        elif self._value_continues(token):
            self._value += c.pieces[token]
            self._value_tokens += 1
        elif not self._value and token in {ids[0] for ids in self._symbolic}:
            self._force([(ids, "value", word) for ids, word in self._symbolic.items()], consumed=token)
        else:
            self._end_value()
            self._state = "args"
            self._take_after_value(token)

    def _value_continues(self, token: int) -> bool:
        c = self.c
        if token == c.eos_id or token in c.function_of_id:
            return False
        if self._arg.type == "string":
            return not (token == c.fragment(";")[0] and self._value.strip())
        return _NUMBER_PREFIX.fullmatch(self._value + c.pieces[token]) is not None

    def _take_after_value(self, token: int) -> None:
        c = self.c
        if token in c.function_of_id:
            self._state = "function"
            self.advance(token)
            return
        _, given = self._calls[-1]
        prefix = c.fragment(";") if given else ()
        self._force([(prefix + c.fragment(f" {a.name}:"), "arg", a.name) for a in self._remaining()], consumed=token)

    def _force(self, candidates, consumed: int) -> None:
        self._state = "forced"
        self._candidates = candidates
        self._pos = 0
        self._take_forced(consumed)

    def _finished(self) -> tuple[str, str] | None:
        for ids, kind, meaning in self._candidates:
            if len(ids) == self._pos:
                return kind, meaning
        return None

    def _take_forced(self, token: int) -> None:
        matching = [cand for cand in self._candidates if len(cand[0]) > self._pos and cand[0][self._pos] == token]
        if not matching:  # the token ends a finished candidate and starts what follows it
            kind, meaning = self._finished()
            self._finish(kind, meaning)
            self.advance(token)
            return
        self._candidates = matching
        self._pos += 1
        finished = self._finished()
        if finished and len(self._candidates) == 1:
            self._finish(*finished)

    def _finish(self, kind: str, meaning: str) -> None:
        if kind == "value":
            self._calls[-1][1][self._arg.name] = meaning
            self._state = "args"
            return
        spec, _ = self._calls[-1]
        self._arg = arg = spec.arg(meaning)
        self._value, self._value_tokens = "", 0
        if arg.type in ("enum", "bool"):
            words = list(arg.values) if arg.type == "enum" else ["true", "false"]
            self._state = "forced"
            self._candidates = [(self.c.fragment(" " + w), "value", w) for w in words]
            self._pos = 0
        else:
            self._state = "value"
            self._symbolic = {self.c.fragment(" " + w): w for w in symbolic_words(arg)}

    def _end_value(self) -> None:
        if self._state == "value" and self._value.strip():
            self._calls[-1][1][self._arg.name] = self._value.strip()
        elif self._state == "forced" and (finished := self._finished()) and finished[0] == "value":
            self._calls[-1][1][self._arg.name] = finished[1]

    # -- the result --------------------------------------------------------
    def calls(self) -> list[Call]:
        out = []
        for spec, given in self._calls:
            if spec is None:
                continue
            out.append(Call(spec.name, {name: parse_value(spec.arg(name), text) for name, text in given.items()}))
        return out

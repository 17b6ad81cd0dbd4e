"""Pronunciations for domain words the recognizer's dictionary lacks.

The phrase templates use words a general dictionary does not have: contractions
written without the apostrophe as a recognizer writes them ("dont", "thats"),
compounds ("windscreen", "touchscreen"), prefixed or suffixed forms
("recirculate", "defroster", "unmute"). Each is pronounced from known pieces;
a word with no such analysis is left out (and reported), never guessed letter
by letter.
"""

from __future__ import annotations

from typing import Callable

SUFFIXES = {"s": "Z", "es": "IH Z", "ed": "D", "er": "ER", "ers": "ER Z", "ing": "IH NG"}
PREFIXES = {"re": "R IY", "un": "AH N", "de": "D IY", "pre": "P R IY", "sub": "S AH B"}
MIN_PIECE = 3


def pronounce(word: str, lookup: Callable[[str], str | None]) -> str | None:
    """Phones for `word` from the dictionary `lookup`, or None."""
    return lookup(word) or _apostrophe(word, lookup) or _affixed(word, lookup) or _compound(word, lookup)


def _apostrophe(word: str, lookup) -> str | None:
    for i in range(len(word) - 1, 0, -1):
        phones = lookup(word[:i] + "'" + word[i:])
        if phones:
            return phones
    return None


def _affixed(word: str, lookup) -> str | None:
    for suffix, phones in SUFFIXES.items():
        stem = word[: -len(suffix)]
        if word.endswith(suffix) and len(stem) >= MIN_PIECE:
            base = lookup(stem) or lookup(stem + "e") or _compound(stem, lookup)
            if base:
                return f"{base} {phones}"
    for prefix, phones in PREFIXES.items():
        rest = word[len(prefix):]
        if word.startswith(prefix) and len(rest) >= MIN_PIECE:
            base = lookup(rest) or _affixed(rest, lookup) or _compound(rest, lookup)
            if base:
                return f"{phones} {base}"
    return None


def _compound(word: str, lookup) -> str | None:
    """Two known words; of several splits the most even ("slide show", not "slides how")."""
    splits = sorted(range(MIN_PIECE, len(word) - MIN_PIECE + 1), key=lambda i: -min(i, len(word) - i))
    for i in splits:
        head, tail = lookup(word[:i]), lookup(word[i:])
        if head and tail:
            return f"{head} {tail}"
    return None

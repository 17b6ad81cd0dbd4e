"""One normal form for command text, used for training data and at run time alike.

Lower case, no punctuation (apostrophes dropped: "i'm" -> "im"), a decimal
point kept between digits, "%" and "°" spelled out, whitespace collapsed:
typed text then looks like what a speech recognizer produces.
"""

import re

_SPELLED = {"%": " percent ", "°c": " degrees ", "°": " degrees ", "&": " and ", "+": " plus "}
_DECIMAL = re.compile(r"(?<=\d)\.(?=\d)")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_NOT_WORD = re.compile(r"[^a-z0-9.\s\-\x00\x01]+")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    text = text.lower().replace("’", "'").replace("'", "")
    for symbol, words in _SPELLED.items():
        text = text.replace(symbol, words)
    text = _DECIMAL.sub("\x00", text)      # protect 21.5
    text = _NEGATIVE.sub("\x01", text)     # protect -2
    text = _NOT_WORD.sub(" ", text).replace(".", " ").replace("-", " ")
    text = text.replace("\x00", ".").replace("\x01", "-")
    return _SPACES.sub(" ", text).strip()

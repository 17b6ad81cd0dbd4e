"""The speech language model shipped beside a command model: where it is, and its vocabulary."""

from __future__ import annotations

from pathlib import Path

from agent import manifest
from agent.errors import ModelError, RecognizerError


def speech_lm_path(model: str | Path) -> Path:
    """`default.gguf` -> `default.speech.arpa`, beside it."""
    model = Path(model)
    return model.with_name(model.stem + ".speech.arpa")


def verified_speech_lm(model: str | Path) -> Path:
    path = speech_lm_path(model)
    if not path.is_file():
        raise RecognizerError(f"no speech language model at {path}: rebuild the model with the toolchain, "
                              "or set voice.domain to false for general recognition")
    try:
        manifest.verify(path)
    except ModelError as exc:
        raise RecognizerError(str(exc)) from None
    return path


def vocabulary(arpa: str | Path) -> list[str]:
    """The unigrams of an ARPA file, without the sentence markers."""
    words, in_unigrams = [], False
    with open(arpa) as f:
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                in_unigrams = line == "\\1-grams:"
                continue
            if in_unigrams and line:
                word = line.split()[1]
                if word not in ("<s>", "</s>", "<unk>"):
                    words.append(word)
    return words

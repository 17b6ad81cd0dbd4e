"""Two streaming recognizers behind one interface: PCM chunks in, partial and final text out.

pocketsphinx's wheel carries a US English acoustic model and dictionary, so
it works on a fresh machine: it is the embedded default. vosk is the
production recognizer; the integrator points `voice.model` at a vosk model
directory. Both can be constrained to the agent's domain: pocketsphinx
decodes with the speech language model built beside the command model, vosk
with its vocabulary as a grammar (for models that support one).

A recognizer is loaded once and reused, one utterance at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from agent.errors import RecognizerError
from agent.voice import SAMPLE_RATE
from agent.voice.domain import vocabulary
from agent.voice.lexicon import pronounce


class Recognizer(Protocol):
    name: str

    def start(self) -> None:
        """Begin an utterance (drops anything left from an earlier one)."""

    def accept(self, pcm: bytes) -> None:
        """Feed 16 kHz mono 16-bit PCM."""

    def partial(self) -> str:
        """The best guess so far."""

    def finish(self) -> str:
        """End the utterance; its final text (empty when nothing was recognized)."""


class PocketSphinxRecognizer:
    name = "pocketsphinx"

    def __init__(self, acoustic_model: str = "", language_model: str | Path | None = None):
        try:
            from pocketsphinx import Decoder, get_model_path
        except ImportError:
            raise RecognizerError("pocketsphinx is not installed (pip install 'vehicle-agent[voice]')") from None
        hmm = acoustic_model or os.path.join(get_model_path(), "en-us", "en-us")
        if not os.path.isdir(hmm):
            raise RecognizerError(f"no pocketsphinx acoustic model directory at {hmm}")
        options = {"hmm": hmm, "samprate": SAMPLE_RATE, "loglevel": "FATAL"}
        if language_model:
            options["lm"] = str(language_model)
        try:
            self._decoder = Decoder(**options)
        except (RuntimeError, ValueError) as exc:
            raise RecognizerError(f"pocketsphinx could not load its models: {exc}") from None
        self._in_utterance = False
        self.unpronounceable: list[str] = []
        if language_model:
            self._add_domain_words(vocabulary(language_model))

    def _add_domain_words(self, words: list[str]) -> None:
        """Give the dictionary the domain words it lacks, so the language model can use them."""
        missing = [w for w in words if self._decoder.lookup_word(w) is None]
        added = []
        for word in missing:
            phones = pronounce(word, self._decoder.lookup_word)
            if phones:
                added.append((word, phones))
            else:
                self.unpronounceable.append(word)
        for n, (word, phones) in enumerate(added):
            self._decoder.add_word(word, phones, n == len(added) - 1)  # rebuild the search once, at the end

    def start(self) -> None:
        if self._in_utterance:
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._in_utterance = True

    def accept(self, pcm: bytes) -> None:
        self._decoder.process_raw(pcm, False, False)

    def partial(self) -> str:
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp else ""

    def finish(self) -> str:
        if not self._in_utterance:
            return ""
        self._decoder.end_utt()
        self._in_utterance = False
        return self.partial()


class VoskRecognizer:
    name = "vosk"

    def __init__(self, model_dir: str, vocabulary: list[str] | None = None):
        if not model_dir:
            raise RecognizerError("the vosk backend needs voice.model: the directory of a vosk model")
        if not Path(model_dir, "am").is_dir() and not Path(model_dir, "final.mdl").is_file():
            raise RecognizerError(f"{model_dir} is not a vosk model directory (no am/ inside)")
        try:
            import vosk
        except ImportError:
            raise RecognizerError("vosk is not installed (pip install 'vehicle-agent[voice]')") from None
        vosk.SetLogLevel(-1)
        try:
            self._model = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception when Kaldi fails to load
            raise RecognizerError(f"vosk could not load the model in {model_dir}: {exc}") from None
        self._grammar = json.dumps(sorted(vocabulary) + ["[unk]"]) if vocabulary else None
        self._vosk = vosk
        self._recognizer = None
        self._last_partial = ""

    def start(self) -> None:
        args = (self._model, float(SAMPLE_RATE)) + ((self._grammar,) if self._grammar else ())
        self._recognizer = self._vosk.KaldiRecognizer(*args)
        self._final_parts: list[str] = []
        self._last_partial = ""

    def accept(self, pcm: bytes) -> None:
        if self._recognizer.AcceptWaveform(pcm):  # vosk found a pause: keep that segment's text
            self._final_parts.append(json.loads(self._recognizer.Result()).get("text", ""))
            self._last_partial = ""
        else:
            self._last_partial = json.loads(self._recognizer.PartialResult()).get("partial", "")

    def partial(self) -> str:
        return " ".join(p for p in self._final_parts + [self._last_partial] if p)

    def finish(self) -> str:
        if self._recognizer is None:
            return ""
        self._final_parts.append(json.loads(self._recognizer.FinalResult()).get("text", ""))
        self._recognizer = None
        text = " ".join(p for p in self._final_parts if p)
        return " ".join(w for w in text.split() if w != "[unk]")


def open_recognizer(settings, command_model: str | Path | None) -> Recognizer:
    """The configured backend, constrained to the domain of `command_model` when voice.domain is on."""
    from agent.voice.domain import verified_speech_lm

    lm = verified_speech_lm(command_model) if settings.domain and command_model else None
    if settings.backend == "pocketsphinx":
        return PocketSphinxRecognizer(settings.model, lm)
    if settings.backend == "vosk":
        return VoskRecognizer(settings.model, vocabulary(lm) if lm else None)
    raise RecognizerError(f"unknown speech backend {settings.backend!r} (pocketsphinx or vosk)")

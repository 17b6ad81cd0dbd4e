"""The agent's speech input: its recognizer, used one utterance at a time, on the spare cores."""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator

from agent.voice.endpoint import EndpointConfig
from agent.voice.recognizers import Recognizer, open_recognizer
from agent.voice.utterance import Transcript, UtteranceLimits, recognize


class RecognizerBusy(Exception):
    """Another utterance is being recognized."""


class SpeechInput:
    def __init__(self, recognizer: Recognizer, settings, pinner=None):
        self.recognizer = recognizer
        self.settings = settings
        self.pinner = pinner
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings, command_model, pinner=None) -> "SpeechInput":
        speech = cls(open_recognizer(settings, command_model), settings, pinner)
        speech.transcribe([bytes(3200)] * 5)  # warm up: the first utterance should not pay for loading
        return speech

    def limits(self, hands_free: bool) -> UtteranceLimits:
        return UtteranceLimits(max_utterance_s=self.settings.max_utterance_s, stop_on_silence=hands_free,
                               endpoint=EndpointConfig(trailing_silence_s=self.settings.trailing_silence_s))

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if not self._lock.acquire(blocking=False):
            raise RecognizerBusy("another utterance is being recognized")
        try:
            yield
        finally:
            self._lock.release()

    def transcribe(self, chunks: Iterable[bytes], hands_free: bool = False) -> Transcript:
        placement = self.pinner.recognition() if self.pinner is not None else nullcontext()
        with self._exclusive(), placement:
            return recognize(self.recognizer, chunks, self.limits(hands_free), self.settings.keep_audio_dir)

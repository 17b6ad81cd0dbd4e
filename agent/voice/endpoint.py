"""End of utterance by silence: a frame-energy detector with an adaptive noise floor.

Frames of 30 ms are speech when their RMS is well above the background
(tracked from the quietest recent frames) and above an absolute minimum, so
steady noise never counts as speech. An utterance ends after
`trailing_silence_s` of non-speech once speech was heard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.voice import SAMPLE_RATE, SAMPLE_WIDTH

FRAME_S = 0.03


@dataclass(frozen=True)
class EndpointConfig:
    trailing_silence_s: float = 0.8
    speech_ratio: float = 3.0       # speech: RMS this many times the noise floor ...
    min_speech_rms: float = 300.0   # ... and above this (of 32768)
    min_speech_s: float = 0.15      # this much speech before an utterance counts as started


class Endpointer:
    def __init__(self, config: EndpointConfig = EndpointConfig()):
        self.config = config
        self.frame_bytes = int(SAMPLE_RATE * FRAME_S) * SAMPLE_WIDTH
        self._pending = b""
        self._floor: float | None = None
        self.speech_s = 0.0
        self.silence_s = 0.0
        self.ended = False

    @property
    def heard_speech(self) -> bool:
        return self.speech_s >= self.config.min_speech_s

    def feed(self, pcm: bytes) -> bool:
        """Consume audio; True once the utterance has ended (speech, then enough silence)."""
        data = self._pending + pcm
        whole = len(data) - len(data) % self.frame_bytes
        self._pending = data[whole:]
        if whole:
            frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64).reshape(-1, self.frame_bytes // 2)
            for rms in np.sqrt((frames ** 2).mean(axis=1)):
                self._frame(float(rms))
        return self.ended

    def _frame(self, rms: float) -> None:
        floor = rms if self._floor is None else self._floor  # the first frame is taken for background
        # the floor falls fast and rises slowly, so it follows the background, not the speech
        self._floor = min(rms, floor) if rms < floor else floor + 0.02 * (rms - floor)
        speech = rms >= max(self.config.min_speech_rms, self.config.speech_ratio * max(floor, 1.0))
        if speech:
            self.speech_s += FRAME_S
            self.silence_s = 0.0
        else:
            self.silence_s += FRAME_S
            if self.heard_speech and self.silence_s >= self.config.trailing_silence_s:
                self.ended = True

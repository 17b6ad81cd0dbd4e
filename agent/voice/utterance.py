"""One utterance, from audio chunks to a transcript, within bounds.

Push-to-talk (the client closes the utterance) or hands-free (silence closes
it); either way an utterance longer than `max_utterance_s` is cut there, so a
stream that never ends cannot hold the recognizer. Audio is kept only when a
directory for it is configured.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from agent.errors import AudioError
from agent.voice import SAMPLE_RATE, SAMPLE_WIDTH
from agent.voice.endpoint import EndpointConfig, Endpointer
from agent.voice.recognizers import Recognizer


@dataclass(frozen=True)
class UtteranceLimits:
    max_utterance_s: float = 15.0
    stop_on_silence: bool = False   # hands-free: end at trailing silence; push-to-talk: at the client's close
    endpoint: EndpointConfig = EndpointConfig()


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float
    processing_ms: float       # time spent in the recognizer, all chunks and the final pass
    final_ms: float            # from the end of audio to the final text: what recognition adds to latency
    ended_by: str              # "client", "silence" or "limit"
    heard_speech: bool

    @property
    def real_time_factor(self) -> float:
        return self.processing_ms / 1000 / self.audio_s if self.audio_s else 0.0


def recognize(recognizer: Recognizer, chunks: Iterable[bytes], limits: UtteranceLimits = UtteranceLimits(),
              keep_audio_dir: str = "") -> Transcript:
    """Feed chunks until the client stops, silence ends the utterance, or the length limit is hit."""
    endpointer = Endpointer(limits.endpoint)
    max_bytes = int(limits.max_utterance_s * SAMPLE_RATE) * SAMPLE_WIDTH
    received = 0
    kept: list[bytes] = []
    processing = 0.0
    ended_by = "client"
    recognizer.start()
    try:
        for chunk in chunks:
            if len(chunk) % SAMPLE_WIDTH:
                raise AudioError(f"a chunk of {len(chunk)} bytes is not whole 16-bit samples")
            chunk = chunk[: max_bytes - received]
            received += len(chunk)
            if keep_audio_dir:
                kept.append(chunk)
            started = time.perf_counter()
            recognizer.accept(chunk)
            processing += time.perf_counter() - started
            if endpointer.feed(chunk) and limits.stop_on_silence:
                ended_by = "silence"
                break
            if received >= max_bytes:
                ended_by = "limit"
                break
        started = time.perf_counter()
        text = recognizer.finish()
    except BaseException:
        recognizer.finish()  # leave the recognizer ready for the next utterance
        raise
    final = time.perf_counter() - started
    if keep_audio_dir:
        _keep(keep_audio_dir, b"".join(kept))
    return Transcript(text=text, audio_s=received / SAMPLE_WIDTH / SAMPLE_RATE, processing_ms=(processing + final) * 1000,
                      final_ms=final * 1000, ended_by=ended_by, heard_speech=endpointer.heard_speech)


def _keep(directory: str, pcm: bytes) -> None:
    from agent.voice.audio import write_wav

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    write_wav(path / time.strftime(f"utterance-%Y%m%d-%H%M%S-{time.time_ns() % 10**6:06d}.wav"), pcm)


def chunked(pcm: bytes, seconds: float = 0.1) -> Iterable[bytes]:
    """PCM in chunks of `seconds`, as a client streams it."""
    size = int(seconds * SAMPLE_RATE) * SAMPLE_WIDTH
    for start in range(0, len(pcm), size):
        yield pcm[start:start + size]

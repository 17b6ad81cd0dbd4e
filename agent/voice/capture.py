"""Microphone audio from ALSA, through `arecord` (alsa-utils): no audio library to build."""

from __future__ import annotations

import shutil
import subprocess
from typing import Iterator

from agent.errors import AudioError
from agent.voice import SAMPLE_RATE, SAMPLE_WIDTH
from agent.voice.endpoint import EndpointConfig, Endpointer


class Microphone:
    """16 kHz mono 16-bit chunks from an ALSA capture device, until closed."""

    def __init__(self, device: str = "default", chunk_s: float = 0.1):
        if shutil.which("arecord") is None:
            raise AudioError("arecord is not installed (Debian package alsa-utils): cannot capture audio")
        self.chunk_bytes = int(chunk_s * SAMPLE_RATE) * SAMPLE_WIDTH
        self._process = subprocess.Popen(
            ["arecord", "-q", "-D", device, "-f", "S16_LE", "-r", str(SAMPLE_RATE), "-c", "1", "-t", "raw"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.device = device

    def chunks(self) -> Iterator[bytes]:
        while True:
            chunk = self._process.stdout.read(self.chunk_bytes)
            if not chunk:
                self._process.wait()
                error = self._process.stderr.read().decode(errors="replace").strip()
                if self._process.returncode not in (0, -15):
                    raise AudioError(f"cannot capture from ALSA device {self.device!r}: {error or 'arecord failed'}")
                return
            yield chunk

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
        self._process.stdout.close()  # arecord may be blocked writing to the pipe: this unblocks it
        try:
            self._process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stderr.close()

    def __enter__(self) -> "Microphone":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def one_utterance(chunks: Iterator[bytes], config: EndpointConfig, max_s: float) -> Iterator[bytes]:
    """Chunks up to the end of the first utterance (speech, then trailing silence) or `max_s`."""
    endpointer = Endpointer(config)
    sent = 0
    for chunk in chunks:
        yield chunk
        sent += len(chunk)
        if endpointer.feed(chunk) or sent >= max_s * SAMPLE_RATE * SAMPLE_WIDTH:
            return

"""Test speech: Debian's flite voices, converted with sox to 16 kHz mono 16-bit PCM; and word error rate.

Used by the voice benchmark and the voice tests; nothing here is committed
audio, every utterance is synthesized when it is needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

VOICES = ("slt", "rms")


def have_tools() -> bool:
    return bool(shutil.which("flite") and shutil.which("sox"))


def synthesize(text: str, voice: str, path: Path | None = None, rate: int = 16000, channels: int = 1) -> bytes:
    """flite speech as raw 16-bit PCM at `rate` (and, when `path` is given, also a WAV file there)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw_wav = Path(tmp) / "flite.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw_wav)], check=True, capture_output=True)
        convert = ["-r", str(rate), "-c", str(channels), "-b", "16", "-e", "signed-integer"]
        if path is not None:
            subprocess.run(["sox", str(raw_wav), *convert, str(path)], check=True, capture_output=True)
        return subprocess.run(["sox", str(raw_wav), "-t", "raw", *convert, "-"], check=True,
                              capture_output=True).stdout


def espeak(text: str, voice: str, path: Path) -> None:
    """espeak-ng speech as a 16 kHz mono WAV file."""
    with tempfile.TemporaryDirectory() as tmp:
        raw_wav = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw_wav), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw_wav), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True,
                       capture_output=True)


def spoken_form(text: str) -> str:
    """The words a recognizer should write for a command: normalized, numbers in words."""
    import random

    from agent.templates import speak_number
    from agent.textnorm import normalize

    return re.sub(r"-?\d+(\.\d+)?", lambda m: speak_number(float(m.group()), random.Random(0), True), normalize(text))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): word-level edit distance."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ref[i - 1] != hyp[j - 1]))
    return row[len(hyp)], len(ref)

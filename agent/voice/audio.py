"""WAV files in, 16 kHz mono 16-bit PCM out, or a clear error."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np

from agent.errors import AudioError
from agent.voice import SAMPLE_RATE

_DTYPES = {1: np.uint8, 2: "<i2", 4: "<i4"}


PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE


def read_wav(path: str | Path) -> bytes:
    """Any PCM (8/16/24/32-bit) or 32-bit float WAV file as 16 kHz mono 16-bit PCM: channels averaged,
    rate converted. Parsed here rather than with `wave`, which refuses WAVE_FORMAT_EXTENSIBLE files."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AudioError(f"no audio file at {path}") from None
    except IsADirectoryError:
        raise AudioError(f"{path} is a directory, not a WAV file") from None
    fmt, data, promised = _riff_chunks(path, raw)
    tag, channels, rate, width = _format(path, fmt)
    if promised > len(data) or len(data) % (channels * width):
        raise AudioError(f"{path} is truncated: its header promises {promised} bytes of audio, it holds {len(data)}")
    if not data:
        raise AudioError(f"{path} holds no audio")
    samples = _to_float(data, width, tag == FLOAT).reshape(-1, channels).mean(axis=1)
    return to_pcm16(resample(samples, rate, SAMPLE_RATE))


def _riff_chunks(path: Path, raw: bytes) -> tuple[bytes, bytes, int]:
    """(fmt chunk, data bytes present, data bytes the header promises)."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioError(f"{path} is not a PCM WAV file we can read: no RIFF/WAVE header")
    fmt, offset = None, 12
    while offset + 8 <= len(raw):
        kind, size = raw[offset:offset + 4], struct.unpack_from("<I", raw, offset + 4)[0]
        body = raw[offset + 8:offset + 8 + size]
        if kind == b"fmt ":
            fmt = body
        elif kind == b"data":
            if fmt is None:
                break
            return fmt, body, size
        offset += 8 + size + (size & 1)
    if fmt is None:
        raise AudioError(f"{path} is not a PCM WAV file we can read: no format chunk")
    raise AudioError(f"{path} is truncated: it has no audio data chunk")


def _format(path: Path, fmt: bytes) -> tuple[int, int, int, int]:
    if len(fmt) < 16:
        raise AudioError(f"{path} is not a PCM WAV file we can read: its format chunk is cut short")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID starts with the plain tag
    width = bits // 8
    if tag not in (PCM, FLOAT) or (tag == PCM and width not in (1, 2, 3, 4)) or (tag == FLOAT and width != 4):
        raise AudioError(f"{path}: {bits}-bit {'float' if tag == FLOAT else f'format {tag}'} audio is not "
                         "supported (8, 16, 24 or 32-bit PCM, or 32-bit float)")
    if not channels or not rate:
        raise AudioError(f"{path} is not a PCM WAV file we can read: {channels} channels at {rate} Hz")
    return tag, channels, rate, width


def _to_float(data: bytes, width: int, is_float: bool = False) -> np.ndarray:
    """Samples scaled to [-1, 1)."""
    if is_float:
        return np.frombuffer(data, dtype="<f4").astype(np.float64)
    if width == 3:  # 24-bit: widen each little-endian triple to int32
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)
        return ints.astype(np.float64) / 2**31
    values = np.frombuffer(data, dtype=_DTYPES[width]).astype(np.float64)
    if width == 1:
        return (values - 128.0) / 128.0
    return values / float(2 ** (8 * width - 1))


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling of a whole signal (FFT: the spectrum is cut or padded)."""
    if rate == target or len(samples) == 0:
        return samples
    n_out = max(1, round(len(samples) * target / rate))
    spectrum = np.fft.rfft(samples)
    keep = n_out // 2 + 1
    out = np.zeros(keep, dtype=complex)
    n = min(keep, len(spectrum))
    out[:n] = spectrum[:n]
    return np.fft.irfft(out, n_out) * (n_out / len(samples))


def to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0 - 1 / 32768) * 32768).astype("<i2").tobytes()


def write_wav(path: str | Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SAMPLE_RATE)
        f.writeframes(pcm)

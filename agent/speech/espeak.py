"""espeak-ng speech as 24 kHz int16: the command line, its WAV, and a tone when it is missing."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import soxr

RATE = 24000
VOICE = "en-us"
WPM = 175
TIMEOUT_S = 10.0


class SpeechError(RuntimeError):
    """espeak-ng failed or wrote something that is not speech."""


def program() -> str | None:
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def argv(espeak: str, text: str, voice: str = VOICE, wpm: int = WPM) -> list[str]:
    """The command that writes `text` as a WAV on stdout ("--": a text starting with "-" is spoken)."""
    return [espeak, "-v", voice, "-s", str(wpm), "--stdout", "--", text]


def parse_wav(data: bytes) -> tuple[int, np.ndarray]:
    """(rate, int16 mono samples) of espeak-ng's WAV output (streamed: its sizes are bogus)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV")
    pos, rate = 12, 22050
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"fmt ":
            rate = int.from_bytes(data[pos + 12:pos + 16], "little")
        elif cid == b"data":
            body = data[pos + 8:]
            return rate, np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").astype(np.int16)
        pos += 8 + size
    raise ValueError("espeak-ng's WAV has no data chunk")


def decode(wav: bytes, rate: int = RATE) -> np.ndarray:
    """espeak-ng's WAV output as int16 at `rate` (one whole buffer: the same text, the same samples)."""
    source_rate, pcm = parse_wav(wav)
    return pcm if source_rate == rate else soxr.resample(pcm, source_rate, rate)


def speak(text: str, voice: str = VOICE, wpm: int = WPM, rate: int = RATE,
          espeak: str | None = None) -> np.ndarray:
    """Text as int16 speech at `rate`, made by espeak-ng; SpeechError when it cannot be."""
    espeak = espeak or program()
    if espeak is None:
        raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
    try:
        proc = subprocess.run(argv(espeak, text, voice, wpm), capture_output=True,
                              timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SpeechError(f"espeak-ng could not run: {e}") from None
    if proc.returncode != 0:
        raise SpeechError(f"espeak-ng exited with {proc.returncode}: "
                          f"{proc.stderr.decode(errors='replace').strip()[:200]}")
    try:
        return decode(proc.stdout, rate)
    except ValueError as e:
        raise SpeechError(str(e)) from None


def tone(text: str, rate: int = RATE) -> np.ndarray:
    """A stand-in for speech when espeak-ng is missing: 0.3 s of 440 Hz per word, at -12 dBFS."""
    n = int(rate * 0.3 * max(1, len(text.split())))
    t = np.arange(n) / rate
    return (0.25 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)

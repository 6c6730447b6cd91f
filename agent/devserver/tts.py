"""Reply speech: espeak-ng, resampled to 24 kHz pcm16 (or G.711 at 8 kHz); a tone without it."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import OrderedDict

import numpy as np
import soxr

from agent.audio import codec, g711

log = logging.getLogger(__name__)

PCM16_RATE = 24000
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 175
_CACHE_SIZE = 32


def rate_of(fmt: str) -> int:
    """Samples per second of a realtime audio format."""
    return PCM16_RATE if fmt == "pcm16" else codec.G711_RATE


def bytes_per_sample(fmt: str) -> int:
    return 2 if fmt == "pcm16" else 1


def encode(pcm24k: np.ndarray, fmt: str) -> bytes:
    """24 kHz int16 speech -> bytes in a realtime output format."""
    return codec.encode(pcm24k.astype(np.int16, copy=False), fmt)


def decode(data: bytes, fmt: str) -> np.ndarray:
    """Bytes in a realtime input format -> int16 samples at that format's rate."""
    if fmt == "pcm16":
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16)
    return g711.ulaw_decode(data) if fmt == "g711_ulaw" else g711.alaw_decode(data)


def tone(text: str) -> np.ndarray:
    """A stand-in for speech when espeak-ng is missing: 0.3 s of 440 Hz per word, at -12 dBFS."""
    n = int(PCM16_RATE * 0.3 * max(1, len(text.split())))
    t = np.arange(n) / PCM16_RATE
    return (0.25 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


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


class Synthesizer:
    """Text -> 24 kHz int16 speech, with a small cache (tests say the same phrases again and again)."""

    def __init__(self, voice: str = ESPEAK_VOICE, wpm: int = ESPEAK_WPM):
        self.voice = voice
        self.wpm = wpm
        self.espeak = shutil.which("espeak-ng")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._warned = False

    async def speak(self, text: str) -> np.ndarray:
        if text in self._cache:
            self._cache.move_to_end(text)
            return self._cache[text]
        pcm = await self._espeak(text) if self.espeak else None
        if pcm is None:
            if not self._warned:
                log.warning("devserver: espeak-ng is missing or failed; replies are tones "
                            "(install it: apt-get install espeak-ng)")
                self._warned = True
            pcm = tone(text)
        self._cache[text] = pcm
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return pcm

    async def _espeak(self, text: str) -> np.ndarray | None:
        # "--" ends the options, so a reply starting with "-" is spoken, not parsed.
        proc = await asyncio.create_subprocess_exec(
            self.espeak, "-v", self.voice, "-s", str(self.wpm), "--stdout", "--", text,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            log.warning("devserver: espeak-ng exited with %s: %s", proc.returncode,
                        err.decode(errors="replace").strip()[:200])
            return None
        try:
            rate, pcm = parse_wav(out)
        except ValueError as e:
            log.warning("devserver: %s", e)
            return None
        if rate != PCM16_RATE:
            pcm = soxr.resample(pcm, rate, PCM16_RATE)
        return pcm

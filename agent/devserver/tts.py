"""Reply speech: espeak-ng, resampled to 24 kHz pcm16 (or G.711 at 8 kHz); a tone without it."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import numpy as np

from agent.audio import codec, g711
from agent.speech import espeak

log = logging.getLogger(__name__)

PCM16_RATE = espeak.RATE
ESPEAK_VOICE = espeak.VOICE
ESPEAK_WPM = espeak.WPM
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


tone = espeak.tone
parse_wav = espeak.parse_wav


class Synthesizer:
    """Text -> 24 kHz int16 speech, with a small cache (tests say the same phrases again and again)."""

    def __init__(self, voice: str = ESPEAK_VOICE, wpm: int = ESPEAK_WPM):
        self.voice = voice
        self.wpm = wpm
        self.espeak = espeak.program()
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
        proc = await asyncio.create_subprocess_exec(
            *espeak.argv(self.espeak, text, self.voice, self.wpm),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            log.warning("devserver: espeak-ng exited with %s: %s", proc.returncode,
                        err.decode(errors="replace").strip()[:200])
            return None
        try:
            return espeak.decode(out, PCM16_RATE)
        except ValueError as e:
            log.warning("devserver: %s", e)
            return None

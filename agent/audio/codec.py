"""The realtime audio formats: pcm16 (24 kHz) and G.711 mu-law / A-law (8 kHz), both ways.

Inside the agent all audio is 24 kHz mono int16. `encode`/`decode` convert one whole
buffer (a WAV, a test vector). A conversation's audio is a stream cut into small chunks, so
it goes through a `StreamEncoder`/`StreamDecoder`, whose resampler keeps its state from one
chunk to the next (no clicks at chunk edges) and which must be `flush()`ed at the end of a
stream to get the resampler's last few milliseconds.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from agent.audio import g711
from agent.audio.base import SAMPLE_RATE
from agent.audio.resample import StreamResampler, resample
from agent.errors import ProtocolError

AudioFormat = Literal["pcm16", "g711_ulaw", "g711_alaw"]
FORMATS: tuple[str, ...] = get_args(AudioFormat)
G711_RATE = 8000

_ENCODERS = {"g711_ulaw": g711.ulaw_encode, "g711_alaw": g711.alaw_encode}
_DECODERS = {"g711_ulaw": g711.ulaw_decode, "g711_alaw": g711.alaw_decode}
_EMPTY = np.zeros(0, dtype=np.int16)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}: use one of {', '.join(FORMATS)}")


def _int16(pcm: np.ndarray) -> np.ndarray:
    pcm = np.asarray(pcm)
    if pcm.dtype != np.int16:
        raise TypeError(f"audio must be int16 samples, not {pcm.dtype}")
    return pcm.reshape(-1)


def encode(pcm: np.ndarray, fmt: AudioFormat) -> bytes:
    """One whole buffer of 24 kHz int16 -> bytes in fmt (G.711: resampled to 8 kHz first)."""
    _check(fmt)
    pcm = _int16(pcm)
    if fmt == "pcm16":
        return pcm.astype("<i2", copy=False).tobytes()
    narrow = resample(pcm, SAMPLE_RATE, G711_RATE)
    return _ENCODERS[fmt](narrow)


def decode(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """One whole buffer of bytes in fmt -> 24 kHz int16 (a new, writable array).

    Raises ProtocolError for pcm16 with an odd number of bytes (half a sample).
    """
    _check(fmt)
    if fmt == "pcm16":
        if len(data) % 2:
            raise ProtocolError(f"pcm16 audio of {len(data)} bytes is not whole 16-bit samples; "
                                "the sender must send an even number of bytes")
        return np.frombuffer(data, dtype="<i2").astype(np.int16)
    narrow = _DECODERS[fmt](data)
    return resample(narrow, G711_RATE, SAMPLE_RATE)


class StreamEncoder:
    """Encodes a stream of 24 kHz int16 chunks (microphone frames) into fmt.

    For G.711 a chunk's bytes need not be 1/3 of its samples: the resampler releases
    output as its filter allows, so a call may return b"" (send nothing then).
    """

    def __init__(self, fmt: AudioFormat):
        _check(fmt)
        self.format = fmt
        self._resampler = (None if fmt == "pcm16" else
                           StreamResampler(SAMPLE_RATE, G711_RATE))

    def encode(self, pcm: np.ndarray) -> bytes:
        pcm = _int16(pcm)
        if self._resampler is None:
            return pcm.astype("<i2", copy=False).tobytes()
        return _ENCODERS[self.format](self._resampler.process(pcm))

    def flush(self) -> bytes:
        """The resampler's tail at the end of the stream; the encoder is then fresh again."""
        if self._resampler is None:
            return b""
        tail = self._resampler.process(_EMPTY, last=True)
        self._resampler.clear()
        return _ENCODERS[self.format](tail)


# The byte each format uses for silence, to pad the last partial frame of a turn.
_SILENCE = {"pcm16": b"\x00", "g711_ulaw": b"\xff", "g711_alaw": b"\xd5"}


def frame_bytes(fmt: AudioFormat, frame_ms: int) -> int:
    """Bytes of one frame of `frame_ms` in fmt: 960 for 20 ms of pcm16, 160 for 20 ms of G.711."""
    _check(fmt)
    return (SAMPLE_RATE * 2 if fmt == "pcm16" else G711_RATE) * frame_ms // 1000


class FrameEncoder:
    """Microphone frames in, appends out: every chunk it returns is exactly one frame of
    `frame_ms` in fmt, however the resampler releases its output.

    G.711's resampler gives nothing for a frame or two, then a block; a 40 ms frame needs two
    microphone frames. What does not fill a frame yet is held until the next push; `flush()`
    at the end of a turn releases the resampler's tail and pads the last partial frame with
    the format's silence, so the turn's last words are sent whole.
    """

    def __init__(self, fmt: AudioFormat, frame_ms: int = 20):
        self._stream = StreamEncoder(fmt)
        self.format = fmt
        self.size = frame_bytes(fmt, frame_ms)
        self._held = bytearray()

    @property
    def held(self) -> int:
        """Bytes waiting for the rest of their frame."""
        return len(self._held)

    def push(self, pcm: np.ndarray) -> list[bytes]:
        """Encode a microphone frame; the whole frames now complete (maybe none), oldest first."""
        self._held += self._stream.encode(pcm)
        return self._cut()

    def flush(self) -> list[bytes]:
        """The end of a turn: everything held, the last frame padded with silence."""
        self._held += self._stream.flush()
        if self._held and len(self._held) % self.size:
            self._held += _SILENCE[self.format] * (self.size - len(self._held) % self.size)
        return self._cut()

    def _cut(self) -> list[bytes]:
        n = len(self._held) // self.size * self.size
        if not n:
            return []
        whole, self._held = bytes(self._held[:n]), self._held[n:]
        return [whole[i:i + self.size] for i in range(0, n, self.size)]


class StreamDecoder:
    """Decodes a stream of audio deltas in fmt into 24 kHz int16 chunks.

    pcm16 is a byte stream: a delta with an odd byte count keeps its last byte, which
    becomes the first byte of the next delta's first sample (nothing is dropped and the
    stream stays sample aligned). `odd_deltas` counts such deltas.
    """

    def __init__(self, fmt: AudioFormat):
        _check(fmt)
        self.format = fmt
        self.odd_deltas = 0
        self._carry = b""
        self._resampler = (None if fmt == "pcm16" else
                           StreamResampler(G711_RATE, SAMPLE_RATE))

    def decode(self, data: bytes) -> np.ndarray:
        if self._resampler is not None:
            return self._resampler.process(_DECODERS[self.format](data))
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self.odd_deltas += 1
            self._carry = data[-1:]
            data = data[:-1]
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def flush(self) -> np.ndarray:
        """The end of the stream (the resampler's tail); a stray odd byte is dropped."""
        self._carry = b""
        if self._resampler is None:
            return _EMPTY.copy()
        tail = self._resampler.process(_EMPTY, last=True)
        self._resampler.clear()
        return tail

    def reset(self) -> None:
        """Forget the stream (after a barge-in): nothing of it may come out later."""
        self._carry = b""
        if self._resampler is not None:
            self._resampler.clear()

"""ITU-T G.711 mu-law and A-law in numpy, bit for bit the tables of the stdlib `audioop`.

Encoding is one lookup in a 65,536-entry table (every int16 has its code), decoding one
lookup in a 256-entry table; both tables are computed once, at import, from the
segment rules of the reference implementation (Sun's g711.c, which `audioop` uses).
`audioop` is gone in Python 3.13, which is why this module exists.
"""

from __future__ import annotations

import numpy as np

_ALL = np.arange(-32768, 32768, dtype=np.int32)  # every int16 sample, in order
_CODES = np.arange(256, dtype=np.int32)


def _segment(magnitude: np.ndarray, ends: tuple[int, ...]) -> np.ndarray:
    """Index of the first segment whose end is >= magnitude (8 when above all)."""
    return np.searchsorted(np.array(ends), magnitude, side="left")


def _ulaw_encode_table() -> np.ndarray:
    pcm = _ALL >> 2  # audioop feeds the 14-bit linear value
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 0x21  # clip, then add the bias (0x84 >> 2)
    seg = _segment(mag, (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF))
    code = (seg << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = _ALL >> 3  # 13-bit linear value
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = _segment(mag, (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF))
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = (seg << 4) | ((mag >> shift) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~_CODES & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = _CODES ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


ULAW_ENCODE = _ulaw_encode_table()
ALAW_ENCODE = _alaw_encode_table()
ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
for _t in (ULAW_ENCODE, ALAW_ENCODE, ULAW_DECODE, ALAW_DECODE):
    _t.flags.writeable = False


def _index(pcm: np.ndarray) -> np.ndarray:
    """int16 samples as indices into the 65,536-entry tables (offset by 32768)."""
    pcm = np.asarray(pcm, dtype=np.int16)
    return pcm.view(np.uint16) ^ 0x8000  # flips the sign bit: -32768 -> 0, 32767 -> 65535


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes (audioop.lin2ulaw(pcm, 2))."""
    return ULAW_ENCODE[_index(pcm)].tobytes()


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> A-law bytes (audioop.lin2alaw(pcm, 2))."""
    return ALAW_ENCODE[_index(pcm)].tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> int16 samples (audioop.ulaw2lin(data, 2))."""
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> int16 samples (audioop.alaw2lin(data, 2))."""
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]

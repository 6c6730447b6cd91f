"""G.711 mu-law and A-law in numpy, bit-exact with the ITU tables (and the stdlib audioop).

The devserver's own small copy: it decodes what the client sends and encodes its replies.
"""

import numpy as np

G711_RATE = 8000

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 2      # 14-bit, as G.711 mu-law works
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), 8159) + 33
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")
    code = (np.minimum(seg, 7) << 4) | ((mag >> (np.minimum(seg, 7) + 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> np.ndarray:
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3      # 13-bit, as G.711 A-law works
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")
    s = np.minimum(seg, 7)
    code = (s << 4) | (np.where(s < 2, mag >> 1, mag >> np.maximum(s, 1)) & 0xF)
    code = np.where(seg >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(np.int16)


def _alaw_decode_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return np.where(a & 0x80, t, -t).astype(np.int16)


# Indexed by the int16 sample viewed as uint16 offset by 32768, or by the code byte.
_ENC = {"g711_ulaw": _ulaw_encode_table(), "g711_alaw": _alaw_encode_table()}
_DEC = {"g711_ulaw": _ulaw_decode_table(), "g711_alaw": _alaw_decode_table()}


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    """int16 samples (8 kHz) -> one G.711 byte each; fmt is g711_ulaw or g711_alaw."""
    return _ENC[fmt][pcm.astype(np.int32) + 32768].tobytes()


def decode(data: bytes, fmt: str) -> np.ndarray:
    """G.711 bytes -> int16 samples (8 kHz); fmt is g711_ulaw or g711_alaw."""
    return _DEC[fmt][np.frombuffer(data, dtype=np.uint8)]

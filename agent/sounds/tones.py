"""The built-in earcons, generated: short soft-edged tones at 24 kHz, no files to ship."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from agent.audio.base import SAMPLE_RATE

PEAK = 0.35  # about -9 dBFS: audible over a quiet room, well under a reply's loudness
_EDGE_S = 0.005  # raised-cosine fade at each note's ends: no clicks


def _note(freqs: tuple[float, ...], seconds: float, decay: float = 0.0) -> np.ndarray:
    """A chord of sines with soft edges and an optional exponential decay (per second)."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    wave = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    edge = int(_EDGE_S * SAMPLE_RATE)
    env = np.ones(n)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
    env[:edge] = ramp
    env[-edge:] = ramp[::-1]
    if decay:
        env *= np.exp(-decay * t)
    return wave * env


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SAMPLE_RATE)))


def _pcm(parts: list[np.ndarray]) -> np.ndarray:
    x = np.concatenate(parts)
    x = x / np.max(np.abs(x)) * PEAK
    out = np.round(x * 32767).astype(np.int16)
    out.setflags(write=False)  # shared by every caller
    return out


@lru_cache(maxsize=None)
def tone(name: str) -> np.ndarray:
    """The built-in earcon called name (wake, end, error, ring, volume) as 24 kHz int16, read-only."""
    if name == "wake":  # rising E5 -> A5: "I'm listening"
        return _pcm([_note((659.25,), 0.07, 8), _note((880.0,), 0.11, 10)])
    if name == "end":  # falling A5 -> E5: "done"
        return _pcm([_note((880.0,), 0.07, 8), _note((659.25,), 0.12, 10)])
    if name == "error":  # two low, rough B3 + F4 buzzes: "something is wrong"
        buzz = _note((246.94, 349.23, 740.8), 0.12)
        return _pcm([buzz, _silence(0.06), buzz])
    if name == "ring":  # two bright A5 + C#6 bursts, then a pause: loop it while a timer rings
        burst = _note((880.0, 1108.73), 0.35)
        return _pcm([burst, _silence(0.15), burst, _silence(0.65)])
    if name == "volume":  # one short, soft E6 tick: heard at the new volume, over in a blink
        return _pcm([_note((1318.5,), 0.06, 30)])
    raise KeyError(f"no built-in earcon {name!r}")

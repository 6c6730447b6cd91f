"""Earcons: the built-in tones, or WAV files named in [sounds], as 24 kHz int16 mono arrays."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Callable

import numpy as np
import soxr

from agent.audio.base import SAMPLE_RATE
from agent.errors import ConfigError
from agent.sounds.tones import tone

EARCONS = ("wake", "end", "error", "ring", "volume")
MAX_SECONDS = 30.0


def _samples(raw: bytes, width: int) -> np.ndarray:
    """Interleaved PCM bytes -> float samples in -1..1."""
    if width == 1:  # 8-bit WAV is unsigned
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    if width == 2:
        return np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    if width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / (1 << 23)
    return np.frombuffer(raw, "<i4").astype(np.float32) / (1 << 31)


def load_wav(path: Path, key: str) -> np.ndarray:
    """A PCM WAV file as 24 kHz int16 mono (channels mixed, resampled); ConfigError naming key if unusable."""
    fix = f"use a PCM WAV file of at most {MAX_SECONDS:.0f} s, or leave {key} empty for the built-in sound"
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            if w.getnframes() > MAX_SECONDS * rate:
                raise ConfigError(f"{key}: {path} is {w.getnframes() / rate:.1f} s long; {fix}")
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise ConfigError(f"{key}: sound file {path} does not exist; {fix}") from None
    except (OSError, EOFError, wave.Error) as e:
        raise ConfigError(f"{key}: cannot read {path} as a WAV file ({e}); {fix}") from None
    x = _samples(raw, width).reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE)
    return np.round(np.clip(x, -1, 32767 / 32768) * 32768).astype(np.int16)


def load_earcons(settings, resolve: Callable[[str], Path] = Path) -> dict[str, np.ndarray]:
    """name -> 24 kHz int16 earcon for wake, end, error, ring and volume: the configured WAV or the
    built-in tone.

    settings is a SoundSettings ([sounds]); resolve turns a configured path into a file (Config.resolve,
    relative to the config's folder). With sounds.enabled = false: an empty dict.
    """
    if not settings.enabled:
        return {}
    sounds = {}
    for name in EARCONS:
        path = getattr(settings, name, "")  # 'ring' and 'volume' are optional in older configs
        sounds[name] = load_wav(resolve(path), f"sounds.{name}") if path else tone(name)
    return sounds

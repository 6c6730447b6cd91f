"""Speech and noise for the wake-word tests: espeak-ng utterances at 24 kHz, pink noise, a feeder."""

import subprocess
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
import soxr

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.wake import Detection

LEAD_IN = SAMPLE_RATE // 2        # silence before the speech
TAIL = SAMPLE_RATE                # silence after it


def _espeak(text: str, voice: str, wpm: int, path: Path) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text], check=True,
                   capture_output=True)


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """speech(text, voice, wpm): 24 kHz int16 espeak-ng speech, synthesized once per session."""
    cache = tmp_path_factory.mktemp("speech")
    made: dict[tuple, np.ndarray] = {}

    def speak(text: str, voice: str, wpm: int) -> np.ndarray:
        key = (text, voice, wpm)
        if key not in made:
            path = cache / f"{zlib.crc32(repr(key).encode()):08x}.wav"
            _espeak(text, voice, wpm, path)
            with wave.open(str(path)) as w:
                raw = np.frombuffer(w.readframes(w.getnframes()), np.int16)
                rate = w.getframerate()
            pcm = soxr.resample(raw.astype(np.float32), rate, SAMPLE_RATE)
            made[key] = np.clip(np.round(pcm), -32768, 32767).astype(np.int16)
        return made[key]

    return speak


def pink_noise(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spectrum))
    k[0] = 1
    return np.fft.irfft(spectrum / np.sqrt(k), n)


def with_noise(x: np.ndarray, snr_db: float | None, seed: int) -> np.ndarray:
    """x with pink noise at snr_db below the level of its active speech (None: x unchanged)."""
    if snr_db is None:
        return x
    x64 = x.astype(np.float64)
    active = x64[np.abs(x64) > 0.01 * np.abs(x64).max()]
    noise = pink_noise(len(x), seed)
    noise *= np.sqrt(np.mean(active ** 2) / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return np.clip(np.round(x64 + noise), -32768, 32767).astype(np.int16)


def padded(pcm: np.ndarray) -> np.ndarray:
    """pcm with LEAD_IN samples of silence before it and TAIL after."""
    return np.concatenate([np.zeros(LEAD_IN, np.int16), pcm, np.zeros(TAIL, np.int16)])


def feed(detector, audio: np.ndarray, frame: int = FRAME_SAMPLES) -> list[Detection]:
    """Every detection while the audio is fed in capture-sized frames."""
    hits = []
    for i in range(0, len(audio) - frame + 1, frame):
        hit = detector.process(audio[i:i + frame])
        if hit is not None:
            hits.append(hit)
    return hits


def count_steps(detector) -> list[int]:
    """Count the engine steps the detector runs, at the engine: [0] grows by one a step (set it to
    0 before a process() call to count that call's)."""
    ran = [0]
    step_engine = detector._step_engine

    def counted(pcm):
        ran[0] += 1
        return step_engine(pcm)

    detector._step_engine = counted
    return ran

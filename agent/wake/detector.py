"""The wake-word detector interface: 24 kHz capture frames in, a Detection out when the word is heard.

Every engine works on 16 kHz audio in its own step size (openWakeWord 1280 samples, Porcupine 512).
The base class resamples the capture stream once with soxr's streaming resampler, cuts it into the
engine's steps, counts samples so a detection can say where in the stream it happened, and applies
the refractory period so that one utterance triggers once. soxr resamples in float and the result is
rounded here: its own int16 output adds random dither (seeded per process), so the same audio scored
differently from run to run (clean detection 94-96 %, false accepts 3-4 in 2 h) and digital silence
reached the model as noise.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import soxr

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.errors import MiraAgentError
from agent.wake.gate import VoiceGate

ENGINE_RATE = 16000
# soxr's streaming output is delay-compensated: 16 kHz sample n lines up with 24 kHz sample 1.5 n.
_RATIO_NUM, _RATIO_DEN = SAMPLE_RATE, ENGINE_RATE


class WakeEngineError(MiraAgentError):
    """A wake-word engine cannot start; the message says what failed (never the access key)."""


@dataclass(frozen=True)
class Detection:
    """The wake word was heard."""

    model: str
    """The model (openWakeWord) or keyword (Porcupine) that fired."""
    score: float
    """The engine's score when it fired (openWakeWord: probability 0..1; Porcupine reports none: 1.0)."""
    frame_index: int
    """0-based index, counted since the detector opened, of the frame whose process() call fired."""
    sample_offset: int
    """24 kHz sample position (counted since open) where the audio the engine had heard ends."""
    stream_samples: int
    """24 kHz samples fed to the detector since open, up to and including the firing frame."""

    @property
    def lag_samples(self) -> int:
        """How many of the newest samples fed in come after the detection point (resampler and step delay)."""
        return self.stream_samples - self.sample_offset


class WakeDetector(ABC):
    """A wake-word engine behind one interface; feed it every capture frame while listening for the word.

    process(), reset() and close() may be called from different threads (a lock orders them), but
    process() is meant for one audio-consuming thread: it does the engine's inference inline.
    """

    #: Engine name, as in the config (openwakeword, porcupine).
    engine: str = ""

    def __init__(self, *, step_samples: int, refractory_s: float, resample_quality: str = "LQ",
                 gate: VoiceGate | None = None):
        self._step = step_samples
        self._gate = gate
        self._refractory = round(refractory_s * SAMPLE_RATE)
        self._quality = resample_quality
        self._resampler = self._new_resampler()
        # Pending 16 kHz samples not yet a whole step; sized so a frame's output always fits.
        self._pending = np.zeros(step_samples + 4 * FRAME_SAMPLES, dtype=np.int16)
        self._npending = 0
        self._frames = 0           # frames fed since open
        self._samples = 0          # 24 kHz samples fed since open
        self._origin = 0           # 24 kHz position where the current 16 kHz stream began (reset)
        self._steps = 0            # engine steps cut from the stream since the origin
        self._quiet_until = -1     # 24 kHz position before which detections are suppressed
        self._lock = threading.Lock()
        self._closed = False

    # -- what an engine implements ---------------------------------------------------------------

    @abstractmethod
    def _step_engine(self, pcm16k: np.ndarray) -> tuple[str, float] | None:
        """Run one step of exactly step_samples at 16 kHz; (name, score) when the engine triggers."""

    def _confirm(self, name: str) -> bool:
        """A second opinion on a detection outside the refractory period (a voice verifier);
        False drops it and starts no refractory period."""
        return True

    @abstractmethod
    def _reset_engine(self) -> None:
        """Forget the audio heard so far."""

    @abstractmethod
    def _close_engine(self) -> None:
        """Release the engine (called once)."""

    # -- the interface -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """What the detector listens for, for logs (e.g. 'openwakeword hey_jarvis')."""
        return self.engine

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def gated(self) -> bool:
        """Whether a voice-activity gate decides when the engine runs (agent.wake.gate)."""
        return self._gate is not None

    @property
    def samples_fed(self) -> int:
        """24 kHz samples fed to process() since open (the scale of Detection.sample_offset)."""
        return self._samples

    def process(self, frame: np.ndarray) -> Detection | None:
        """Feed one 24 kHz int16 mono frame (any length, normally 480 samples); a Detection when it fires."""
        with self._lock:
            if self._closed:
                return None
            self._frames += 1
            self._samples += len(frame)
            out = self._resampler.resample_chunk(np.asarray(frame, dtype=np.float32))
            hit = None
            n = len(out)
            if n:
                np.rint(out, out=out)
                np.clip(out, -32768, 32767, out=out)
                if self._npending + n > len(self._pending):
                    self._pending = np.concatenate([self._pending[:self._npending],
                                                    out.astype(np.int16),
                                                    np.zeros(self._step, np.int16)])
                else:
                    self._pending[self._npending:self._npending + n] = out
                self._npending += n
            while self._npending >= self._step:
                step = self._pending[:self._step]
                index = self._steps
                self._steps += 1
                if self._gate is None:
                    found = self._step_engine(step)
                    if found is not None and hit is None:
                        hit = self._fire(index, *found)
                else:
                    self._gate.admit(index, step)
                rest = self._npending - self._step
                self._pending[:rest] = self._pending[self._step:self._npending]
                self._npending = rest
            if self._gate is not None:
                # a bounded share of the replay per frame: see agent.wake.gate
                for i, pcm, counts in self._gate.take(-(-len(frame) // FRAME_SAMPLES)):
                    found = self._step_engine(pcm)
                    if found is not None and counts and hit is None:
                        hit = self._fire(i, *found)
            return hit

    def _new_resampler(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(SAMPLE_RATE, ENGINE_RATE, 1, dtype="float32", quality=self._quality)

    def _fire(self, index: int, name: str, score: float) -> Detection | None:
        """A Detection for the engine firing on step `index`, unless within the refractory period."""
        offset = self._origin + ((index + 1) * self._step * _RATIO_NUM) // _RATIO_DEN
        if offset < self._quiet_until or not self._confirm(name):
            return None
        self._quiet_until = offset + self._refractory
        return Detection(model=name, score=float(score), frame_index=self._frames - 1,
                         sample_offset=offset, stream_samples=self._samples)

    def reset(self) -> None:
        """Forget the audio heard so far and any refractory period (e.g. after a gap in the stream)."""
        with self._lock:
            if self._closed:
                return
            self._resampler = self._new_resampler()
            self._npending = 0
            self._origin = self._samples
            self._steps = 0
            self._quiet_until = -1
            self._reset_engine()
            if self._gate is not None:
                self._gate.reset()

    def close(self) -> None:
        """Release the engine; safe to call twice. process() returns None afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_engine()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{' closed' if self._closed else ''}>"

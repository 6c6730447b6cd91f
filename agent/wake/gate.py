"""A voice-activity gate in front of the wake model: the model sleeps while nobody speaks.

A speaker waits for its wake word almost all its life, mostly in a quiet room. openWakeWord costs
about 1 ms of CPU per 80 ms step; webrtcvad costs about 1/100 of that. The gate runs webrtcvad on
every step (voice: 3 voiced 20 ms chunks among the last 10) and the model only while voice is
heard and for as long after it as the model's scores still depend on it (its context: 26 steps,
about 2.1 s). While the model sleeps, the steps it skipped are kept in a ring; when voice starts,
the ring is replayed into the model before the step that woke it. The model's state is a function
of its last `context` steps only (fixed-size windows, no recurrence), so:

- a pause up to the ring's length (32 steps) is replayed whole: the model sees the same stream as
  without the gate, and every score is the same, bit for bit;
- after a longer pause, the first `context - 1` replayed steps would be scored on a mix of old
  and new audio: their scores are not used. Without the gate those steps' windows held only
  audio webrtcvad called non-speech, so a detection is lost only if the model fires on such
  audio, which benchmarks/bench_wake.py shows does not happen on its corpus.

A detection comes from the same step at the same stream position as without the gate; only a
score the model reaches on a replayed step is reported on the frame that woke the model.

Turn it on or off with `[wake] vad_gate = true | false` (on by default); in code,
OpenWakeWordDetector(..., vad_gate=False) runs the model on every step.
"""

from __future__ import annotations

import numpy as np

VAD_RATE = 16000
VAD_CHUNK = 320       # 20 ms at 16 kHz, one of webrtcvad's frame sizes
VAD_MODE = 0          # webrtcvad's least aggressive mode: it misses the least speech
RING_STEPS = 32       # skipped steps kept for the replay (2.56 s at 80 ms)
# Voice is 3 voiced chunks among the last 10 (200 ms): webrtcvad calls about 1 % of room-noise
# chunks voiced, and each lone one would keep the model awake for its whole context. Speech
# reaches 3 of 10 within about 60 ms; waking that late costs nothing, the replay covers it.
VOICE_CHUNKS, WINDOW_CHUNKS = 3, 10
_WINDOW_MASK = (1 << WINDOW_CHUNKS) - 1

_NOTHING: tuple = ()


def load_vad(mode: int = VAD_MODE):
    """A webrtcvad.Vad, or None when webrtcvad is not installed."""
    try:
        import webrtcvad
    except ImportError:
        return None
    return webrtcvad.Vad(mode)


class VoiceGate:
    """Decides which 16 kHz engine steps reach the model; admit() each step in stream order.

    step_samples: the engine's step (a whole number of 20 ms chunks); context_steps: how many of
    the newest steps the model's score depends on.
    """

    def __init__(self, vad, *, step_samples: int, context_steps: int, ring_steps: int = RING_STEPS):
        if step_samples % VAD_CHUNK:
            raise ValueError(f"a step of {step_samples} samples is not whole 20 ms chunks")
        if ring_steps < context_steps:
            raise ValueError("the ring must hold at least the model's context")
        self._vad = vad
        self._step = step_samples
        self._context = context_steps
        self._ring = np.zeros((ring_steps, step_samples), np.int16)
        self._awake_left = 0    # steps the model still runs after the last voiced one
        self._skipped = 0       # steps since the model last ran
        self._history = 0       # webrtcvad's last WINDOW_CHUNKS decisions, one bit each
        self.steps_seen = 0
        """Steps admitted since open (for the benchmark's share of steps the model ran)."""
        self.steps_run = 0
        """Steps the model ran on, replays included."""

    def admit(self, index: int, step: np.ndarray) -> tuple | list[tuple[int, np.ndarray, bool]]:
        """The steps the model runs now, as (stream index, samples, score counts), oldest first.

        `step` is stream step `index`; it may be overwritten after this call returns (the ring
        keeps its own copy), so the caller runs the returned steps before it cuts the next one.
        """
        self.steps_seen += 1
        raw = step.tobytes()
        n = 2 * VAD_CHUNK
        voiced = False
        for i in range(0, len(raw), n):
            self._history = ((self._history << 1) | self._vad.is_speech(raw[i:i + n], VAD_RATE)) \
                & _WINDOW_MASK
            voiced = voiced or self._history.bit_count() >= VOICE_CHUNKS
        if not voiced and self._awake_left == 0:
            self._ring[index % len(self._ring)] = step
            self._skipped += 1
            return _NOTHING
        self._awake_left = self._context if voiced else self._awake_left - 1
        out = []
        if self._skipped:
            kept = min(self._skipped, len(self._ring))
            # after a pause longer than the ring, the oldest replayed steps mix old and new audio
            inexact = self._context - 1 if self._skipped > kept else 0
            for k, j in enumerate(range(index - kept, index)):
                out.append((j, self._ring[j % len(self._ring)], k >= inexact))
            self._skipped = 0
        out.append((index, step, True))
        self.steps_run += len(out)
        return out

    def reset(self) -> None:
        """Forget the ring (the engine was reset: it starts from silence, like a new stream)."""
        self._awake_left = 0
        self._skipped = 0
        self._history = 0

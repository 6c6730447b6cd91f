"""A voice-activity gate in front of the wake model: the model sleeps while nobody speaks.

A speaker waits for its wake word almost all its life, mostly in a quiet room. openWakeWord costs
about 1 ms of CPU per 80 ms step; webrtcvad costs about 1/100 of that. The gate runs webrtcvad on
every step (voice: 3 voiced 20 ms chunks among the last 10) and the model only while voice is
heard and for as long after it as the model's scores still depend on it (its context: 26 steps,
about 2.1 s). While the model sleeps, the steps it skipped are kept in a ring; when voice starts,
the ring is replayed into the model ahead of the step that woke it. The model's state is a
function of its last `context` steps only (fixed-size windows, no recurrence), so:

- a pause up to the ring's length (32 steps) is replayed whole: the model sees the same stream as
  without the gate, and every score is the same, bit for bit;
- after a longer pause, the first `context - 1` replayed steps would be scored on a mix of old
  and new audio: their scores are not used. Without the gate those steps' windows held only
  audio webrtcvad called non-speech, so a detection is lost only if the model fires on such
  audio, which benchmarks/bench_wake.py shows does not happen on its corpus.

The replay is spread over the frames that follow: each process() call (one 20 ms frame) runs at
most MAX_STEPS_PER_FRAME model steps, oldest first, so the conversation thread that feeds the
microphone never stalls for a whole replay (33 steps in one call: 0.5-0.7 s on a loaded 2-core
x86, several times more on a Pi 3). With 2 steps a frame against one new step every 4 frames, a
full ring is caught up on the 19th frame counted from the one that woke the model
(VoiceGate.catch_up_frames), and from then on each step runs on the frame that completes it.

A detection comes from the same step at the same stream position with the same score as without
the gate. It is reported on the frame whose call ran its step: a step of the replay (computed
before the stream was caught up) at most 18 frames (360 ms) after the frame that woke the model,
or after its own frame if that came later; every other step on its own frame, as without the
gate. A wake word that wakes the gate lasts longer than the catch-up, so its detection is
normally on time; bench_wake counts and measures the late ones.

Turn it on or off with `[wake] vad_gate = true | false` (on by default); in code,
OpenWakeWordDetector(..., vad_gate=False) runs the model on every step.
"""

from __future__ import annotations

import numpy as np

VAD_RATE = 16000
VAD_CHUNK = 320       # 20 ms at 16 kHz, one of webrtcvad's frame sizes
VAD_MODE = 0          # webrtcvad's least aggressive mode: it misses the least speech
RING_STEPS = 32       # skipped steps kept for the replay (2.56 s at 80 ms)
# Model steps one process() call (a 20 ms frame) runs at most. A step costs about 1 ms here and
# several times that on a Pi 3 / Zero 2 W: two still fit in the frame's own 20 ms there, so the
# loop keeps pace with the microphone while the replay catches up, and a full ring is caught up
# within 0.4 s of the voice starting, before a wake word ends.
MAX_STEPS_PER_FRAME = 2
# Voice is 3 voiced chunks among the last 10 (200 ms): webrtcvad calls about 1 % of room-noise
# chunks voiced, and each lone one would keep the model awake for its whole context. Speech
# reaches 3 of 10 within about 60 ms; waking that late costs nothing, the replay covers it.
VOICE_CHUNKS, WINDOW_CHUNKS = 3, 10
_WINDOW_MASK = (1 << WINDOW_CHUNKS) - 1
# webrtcvad alone calls a quiet room's steady noise voiced now and then (pink noise at -60 dBFS
# kept the model awake about a tenth of the time, a third of the idle daemon's own CPU), on its
# louder chunks: a voiced chunk counts only FLOOR_MARGIN_DB over the room's noise, the mean level
# of the chunks webrtcvad calls unvoiced (pink noise's voiced chunks stand 2-4 dB over it; speech
# at the corpus's worst SNR, 10 dB, well clear of it, and a television's speech is voiced, so it
# never raises the floor it must pass).
FLOOR_MARGIN_DB = 5.0
FLOOR_PULL = 0.05  # each unvoiced chunk pulls the floor this share of the way to its level


def load_vad(mode: int = VAD_MODE):
    """A webrtcvad.Vad, or None when webrtcvad is not installed."""
    try:
        import webrtcvad
    except ImportError:
        return None
    return webrtcvad.Vad(mode)


class VoiceGate:
    """Decides which 16 kHz engine steps reach the model: admit() each step in stream order, then
    take() the steps the model runs now.

    step_samples: the engine's step (a whole number of 20 ms chunks); context_steps: how many of
    the newest steps the model's score depends on; per_frame: the most steps take() hands out for
    one 20 ms frame.
    """

    def __init__(self, vad, *, step_samples: int, context_steps: int, ring_steps: int = RING_STEPS,
                 per_frame: int = MAX_STEPS_PER_FRAME):
        if step_samples % VAD_CHUNK:
            raise ValueError(f"a step of {step_samples} samples is not whole 20 ms chunks")
        if ring_steps < context_steps:
            raise ValueError("the ring must hold at least the model's context")
        if per_frame < 1:
            raise ValueError(f"per_frame = {per_frame}: the model must run at least 1 step a frame")
        self._vad = vad
        self._context = context_steps
        self._per_frame = per_frame
        # the skipped steps and the one that woke the model; while the model catches up, each
        # step it ran frees a row for a newer one
        self._ring = np.zeros((ring_steps + 1, step_samples), np.int16)
        self._next = 0          # stream index of the oldest step the model has not run
        self._end = 0           # stream index of the next step to be admitted
        self._due = 0           # steps before this index are to run (awake, or replayed)
        self._exact_from = 0    # steps before this index are scored on mixed audio: not counted
        self._awake_left = 0    # steps the model still runs after the last voiced one
        self._history = 0       # webrtcvad's last WINDOW_CHUNKS decisions, one bit each
        self._floor: float | None = None  # the room's noise, dB of int16 units (None: unheard)
        self._chunk = np.zeros(step_samples, np.float32)
        frames_per_step = step_samples // VAD_CHUNK
        self.catch_up_frames = next(k for k in range(1, 100 * len(self._ring))
                                    if k * per_frame >= len(self._ring) + (k - 1) // frames_per_step)
        """Frames, from the one that woke the model, in which a full ring's replay has run: a step's
        detection is reported at most catch_up_frames - 1 frames after that frame or its own."""
        self.steps_seen = 0
        """Steps admitted since open (for the benchmark's share of steps the model ran)."""
        self.steps_run = 0
        """Steps the model ran on, replays included."""

    def admit(self, index: int, step: np.ndarray) -> None:
        """Stream step `index` (0, 1, ... since open or reset); the gate keeps its own copy."""
        self.steps_seen += 1
        raw = step.tobytes()
        n = 2 * VAD_CHUNK
        x = self._chunk
        np.copyto(x, step, casting="unsafe")
        powers = np.einsum("ij,ij->i", *(x.reshape(-1, VAD_CHUNK),) * 2) / VAD_CHUNK + 1.0
        voiced = False
        for i, level in enumerate((10.0 * np.log10(powers)).tolist()):
            speech = self._vad.is_speech(raw[i * n:(i + 1) * n], VAD_RATE)
            floor = self._floor
            if not speech:
                self._floor = level if floor is None else floor + FLOOR_PULL * (level - floor)
            elif floor is not None:  # (no floor yet: the room unheard, voice is voice)
                speech = level >= floor + FLOOR_MARGIN_DB
            self._history = ((self._history << 1) | speech) & _WINDOW_MASK
            voiced = voiced or self._history.bit_count() >= VOICE_CHUNKS
        self._ring[index % len(self._ring)] = step
        self._end = index + 1
        if self._end - self._next > len(self._ring):
            # a pause longer than the ring: the oldest kept steps mix old and new audio
            self._next = self._end - len(self._ring)
            self._exact_from = self._next + self._context - 1
        if voiced or self._awake_left:
            self._awake_left = self._context if voiced else self._awake_left - 1
            self._due = self._end

    def take(self, frames: int = 1) -> list[tuple[int, np.ndarray, bool]]:
        """The steps the model runs now, for `frames` 20 ms frames fed: (stream index, samples,
        score counts), oldest first, at most per_frame a frame. Run them before the next admit()."""
        n = min(self._due - self._next, self._per_frame * max(1, frames))
        if n <= 0:
            return []
        size = len(self._ring)
        out = [(j, self._ring[j % size], j >= self._exact_from) for j in range(self._next, self._next + n)]
        self._next += n
        self.steps_run += n
        return out

    def reset(self) -> None:
        """Forget the ring (the engine was reset: it starts from silence, like a new stream)."""
        self._next = self._end = self._due = self._exact_from = 0
        self._awake_left = 0
        self._history = 0  # (the floor stays: the room is the same)

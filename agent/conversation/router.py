"""Where each microphone frame goes, from the state it is told; it knows nothing of sockets.

Every frame goes through the echo canceller first (so the wake word, the pre-roll and what is
sent all hear the cleaned microphone, and the canceller keeps its alignment even while muted),
then into the pre-roll ring. In a state that streams, it goes to the link; in a state that waits
for a trigger, to the wake word; while a reply plays, to voice barge-in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from agent.audio.base import FRAME_MS, SAMPLE_RATE
from agent.state import State

SENDING = frozenset({State.LISTENING, State.FOLLOW_UP, State.CONNECTING, State.RECONNECTING})
"""States whose frames go to the link (which holds them while no session is ready)."""
WAKING = frozenset({State.IDLE, State.OFFLINE, State.ERROR, State.SPEAKING})
"""States in which the wake word starts (or interrupts) a turn."""


def newest(frames, samples: int) -> list[np.ndarray]:
    """The last `samples` samples of a sequence of frames, as frames (the first one partial)."""
    out: list[np.ndarray] = []
    for frame in reversed(frames):
        if samples <= 0:
            break
        out.append(frame[-samples:] if samples < len(frame) else frame)
        samples -= len(frame)
    return out[::-1]


@dataclass(frozen=True)
class Heard:
    """A frame made the router hear a trigger: the wake word, or the user's voice over a reply."""

    source: str
    """"wake word" or "voice"."""
    after: list[np.ndarray]
    """Audio already captured that belongs to the new turn."""
    hit: Any = None
    """The wake detector's hit (model, score, lag_samples), for a wake word."""


class FrameRouter:
    """Routes microphone frames; `send` takes the frames for the link."""

    def __init__(self, send: Callable[[np.ndarray], None], *, preroll_ms: int, echo=None,
                 detector=None, voice=None, wake=None, barge_in: bool = True):
        self._send = send
        self.echo = echo          # EchoCanceller, or None (a WAV file has no echo)
        self.detector = detector  # wake word detector, or None
        self.voice = voice        # VoiceActivity on the canceller's residual, or None
        self.wake = wake          # WakeSettings: how much audio before the wake word is kept
        self.barge_in = barge_in
        self.ring: deque[np.ndarray] = deque(maxlen=max(1, preroll_ms // FRAME_MS))
        self._wake_live = False   # the detector heard the previous frame
        self._voice_live = False  # the voice detector heard the previous frame

    def route(self, frame: np.ndarray, state: State) -> Heard | None:
        """One captured frame, in the given state; a trigger it revealed, if any."""
        if self.echo is not None:
            frame = self.echo.process(frame)
        if state is State.MUTED:
            return None
        self.ring.append(frame)
        if state in SENDING:
            self._send(frame)
        heard = None
        if state in WAKING and self.detector is not None:
            heard = self._listen_for_wake_word(frame)
        else:
            self._wake_live = False
        if heard is None and self.voice is not None:
            heard = self._listen_for_voice(state)
        return heard

    def preroll(self) -> list[np.ndarray]:
        """The recent audio (a button press: what was said as it was pressed belongs to the turn)."""
        return list(self.ring)

    def clear(self) -> None:
        """Forget the recent audio (a turn took it, or the microphone was muted)."""
        self.ring.clear()

    def forget_wake_context(self) -> None:
        """A new detector, or a gap in what it heard: its next frame starts afresh."""
        self._wake_live = False

    def _listen_for_wake_word(self, frame: np.ndarray) -> Heard | None:
        if not self._wake_live:  # the stream had a gap: old context would blur the next words
            self.detector.reset()
            self._wake_live = True
        hit = self.detector.process(frame)
        if hit is None:
            return None
        self._voice_live = False
        if self.wake is None or self.wake.send_wake_word:
            return Heard("wake word", list(self.ring), hit)
        # What was said after the wake word, from a little before the detection point.
        back = self.wake.lookback_ms * SAMPLE_RATE // 1000
        return Heard("wake word", newest(self.ring, hit.lag_samples + back), hit)

    def _listen_for_voice(self, state: State) -> Heard | None:
        """While a reply plays, the user's voice interrupts it: heard in the canceller's
        residual (the user at full level), above the level its echo may reach."""
        if state is not State.SPEAKING or not self.barge_in or self.echo is None:
            self._voice_live = False
            return None
        if not self._voice_live:  # a new reply: the room's noise floor is measured afresh
            self.voice.reset()
            self._voice_live = True
        lag = self.voice.process(self.echo.residual, self.echo.gate_db)
        if lag is None:
            return None
        self._voice_live = False
        return Heard("voice", newest(self.ring, lag))

"""The frame router alone: where each microphone frame goes in each state, with no socket."""

from dataclasses import dataclass

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES
from agent.audio.vad import VoiceActivity
from agent.conversation.router import FrameRouter
from agent.demo import user_audio
from agent.state import State
from agent.wake.settings import WakeSettings

ALL_STATES = list(State)


@dataclass
class _Hit:
    model: str
    score: float
    lag_samples: int


class _Detector:
    """A wake detector that fires on the frame whose first sample is `fire_on`."""

    def __init__(self, fire_on: int):
        self.fire_on, self.heard, self.resets = fire_on, [], 0

    def process(self, frame):
        self.heard.append(int(frame[0]))
        return _Hit("hey_jarvis", 0.9, 3 * FRAME_SAMPLES) if frame[0] == self.fire_on else None

    def reset(self):
        self.resets += 1


class _Canceller:
    """An echo canceller with nothing to cancel: it counts frames and shows its residual."""

    def __init__(self):
        self.frames, self.residual, self.gate_db = 0, None, -120.0

    def process(self, frame):
        self.frames += 1
        self.residual = frame
        return frame


def _make_router(**parts):
    sent = []
    router = FrameRouter(sent.append, preroll_ms=200, **parts)
    return router, sent


def _frames(n, start=1):
    return [np.full(FRAME_SAMPLES, start + i, np.int16) for i in range(n)]


@pytest.mark.parametrize("state", ALL_STATES)
def test_frames_go_to_the_link_only_in_the_states_that_stream(state):
    """LISTENING and FOLLOW_UP stream; CONNECTING and RECONNECTING hand frames to the link to hold."""
    router, sent = _make_router()
    for f in _frames(3):
        router.route(f, state)
    streams = state in (State.LISTENING, State.FOLLOW_UP, State.CONNECTING, State.RECONNECTING)
    assert len(sent) == (3 if streams else 0)


def test_muted_frames_reach_the_canceller_and_nothing_else():
    """While muted the canceller keeps its alignment; no pre-roll, no wake word, nothing sent."""
    echo, detector = _Canceller(), _Detector(fire_on=1)
    router, sent = _make_router(echo=echo, detector=detector)
    for f in _frames(4):
        assert router.route(f, State.MUTED) is None
    assert echo.frames == 4 and not sent and not detector.heard and not router.preroll()


@pytest.mark.parametrize("state", [State.IDLE, State.ERROR, State.SPEAKING])
def test_the_wake_word_is_heard_while_waiting_or_speaking_with_the_audio_after_it(state):
    """A hit returns the trigger with the audio from a little before the detection point."""
    detector = _Detector(fire_on=8)
    wake = WakeSettings(send_wake_word=False, lookback_ms=20)
    router, _ = _make_router(detector=detector, wake=wake)
    heard = [router.route(f, state) for f in _frames(8)]
    assert heard[:7] == [None] * 7
    assert heard[7].source == "wake word" and heard[7].hit.model == "hey_jarvis"
    # lag 3 frames + 20 ms of lookback: the last four frames (5..8)
    assert [int(f[0]) for f in heard[7].after] == [5, 6, 7, 8]


def test_the_wake_word_detector_starts_afresh_after_a_gap():
    """Frames it did not hear (a session in between) must not blur the next words: it is reset."""
    detector = _Detector(fire_on=-1)
    router, _ = _make_router(detector=detector)
    for f in _frames(2):
        router.route(f, State.IDLE)
    for f in _frames(2, start=3):
        router.route(f, State.LISTENING)
    router.route(_frames(1, start=5)[0], State.IDLE)
    assert detector.heard == [1, 2, 5] and detector.resets == 2


def test_the_user_speaking_over_a_reply_is_heard_only_while_speaking():
    """Real speech in the residual interrupts SPEAKING; the same speech in LISTENING triggers nothing."""
    speech = user_audio([(0.0, "Stop, stop, please stop the music now.")], trailing_s=0.2)
    frames = [speech[i:i + FRAME_SAMPLES] for i in range(0, len(speech) - FRAME_SAMPLES, FRAME_SAMPLES)]
    for state, expect in ((State.LISTENING, False), (State.SPEAKING, True)):
        router, _ = _make_router(echo=_Canceller(), voice=VoiceActivity(-35.0, 200))
        heard = [h for h in (router.route(f, state) for f in frames) if h is not None]
        assert bool(heard) is expect
        if expect:
            assert heard[0].source == "voice" and heard[0].after


def test_a_button_press_takes_the_pre_roll_and_clear_forgets_it():
    """The ring holds the last preroll_ms of audio; clear() empties it."""
    router, _ = _make_router()
    for f in _frames(15):
        router.route(f, State.IDLE)
    assert [int(f[0]) for f in router.preroll()] == list(range(6, 16))  # 200 ms = 10 frames
    router.clear()
    assert router.preroll() == []

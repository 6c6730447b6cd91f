"""Faults that must not leave the conversation hanging: outages past the buffer, cut replies, follow-ups."""

import time

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.audio.wavfile import read_wav
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.devserver.script import Entry, Script
from agent.state import State
from fault_proxy import FaultProxy, Watch, dithered, retune
from harness import KEY, Run

pytestmark = pytest.mark.slow

SHORT = Script(entries=(Entry("tell me a story", reply="The end."), Entry("hello", reply="Hi.")))


def silence(seconds: float, seed: int = 3) -> np.ndarray:
    return dithered(np.zeros(int(seconds * SAMPLE_RATE), np.int16), seed)


def test_outage_longer_than_the_buffer_drops_the_turn_then_the_next_conversation_works(tmp_path):
    """Past reconnect.buffer_s the turn is dropped with the error earcon; the speaker waits in
    OFFLINE (nothing listens: the service cannot be reached); once the server is back its probe
    finds it (IDLE) and the next trigger holds a whole conversation."""
    tone = (np.sin(np.arange(4800) * 2 * np.pi * 1000 / SAMPLE_RATE) * 8000).astype(np.int16)
    pcm = dithered(np.concatenate([np.zeros(int(6.0 * SAMPLE_RATE), np.int16),
                                   user_audio([(0.2, "Hello.")], trailing_s=3.0)]))
    with DevServer(api_key=KEY, script=SHORT) as server, FaultProxy(server.port) as proxy:
        run = Run(tmp_path, proxy, pcm, session={"follow_up_s": 1.0},
                  reconnect={"buffer_s": 1.0, "base_s": 0.2})
        retune(run, server={"url": proxy.url})
        run.conversation.earcons = {"error": tone}
        watch = Watch(run)
        with run:
            watch.wait(State.LISTENING)
            time.sleep(0.3)
            proxy.refuse()
            proxy.cut()
            dropped = watch.wait(State.RECONNECTING)
            offline = watch.wait(State.OFFLINE, after=dropped.at, timeout=5)
            assert 0.9 <= offline.at - dropped.at <= 1.6
            assert offline.frames - dropped.frames == 51  # the bound is 1 s of 20 ms frames, and one over
            proxy.listen()
            watch.wait(State.IDLE, after=offline.at, timeout=10)  # the first probe, 2 s after the drop
            time.sleep(max(0.0, watch.marks[0].at + 5.2 - time.monotonic()))
            run.conversation.trigger("button")
            run.join(30)
    assert run.conversation.counters["dropped_turns"] == 1
    assert server.last_session.transcripts == ["hello"]
    assert server.last_session.replies[0].status == "completed"
    played = read_wav(tmp_path / "reply.wav")
    assert np.array_equal(played[:len(tone)], tone)  # the error earcon first, then the reply
    assert len(played) > len(tone) + SAMPLE_RATE // 4
    assert run.states[-1] is State.IDLE


def test_server_silent_mid_reply_is_settled_not_left_speaking(tmp_path):
    """The server goes silent mid-reply: the ping timeout ends SPEAKING, the reply is asked again on a
    new session, and the conversation ends in IDLE."""
    pcm = dithered(user_audio([(0.3, "Tell me a story.")], trailing_s=7.0))
    with DevServer(api_key=KEY, script=SHORT) as server:
        server.faults.mid_response, server.faults.after_deltas = "silence", 1
        run = Run(tmp_path, server, pcm, session={"follow_up_s": 1.0})
        retune(run, server={"ping_interval_s": 0.5, "ping_timeout_s": 1.0})
        watch = Watch(run)
        with run:
            speaking = watch.wait(State.SPEAKING)
            dropped = watch.wait(State.RECONNECTING, after=speaking.at, timeout=5)
            assert dropped.at - speaking.at <= 2.0
            run.join(30)
    assert run.states[-1] is State.IDLE
    assert len(server.sessions) == 2 and server.sessions[1].replies[0].status == "completed"


def test_drop_during_follow_up_does_not_hold_the_session_open(tmp_path):
    """A drop while waiting for a follow-up: after the reconnect the follow-up window still ends the
    session; it does not sit in LISTENING, streaming silence, with no deadline."""
    pcm = dithered(user_audio([(0.3, "Hello.")], trailing_s=12.0))
    with DevServer(api_key=KEY, script=SHORT) as server:
        run = Run(tmp_path, server, pcm, session={"follow_up_s": 2.0})
        watch = Watch(run)
        with run:
            follow = watch.wait(State.FOLLOW_UP)
            server.abort_connections()
            dropped = watch.wait(State.RECONNECTING, after=follow.at)
            watch.wait(State.IDLE, after=dropped.at, timeout=6)
            run.conversation.stop()

"""Exact on the wire: one frame per append in every format, no reply cancelled by the device's own
frames, and every utterance whole across a black hole or a reset, through the real client, a real
proxy and the project's server on 127.0.0.1."""

import time

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES
from agent.audio.codec import FrameEncoder, frame_bytes
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.state import State
from fault_proxy import FaultProxy, Watch, dithered, retune
from harness import KEY, Run, check_all_events
from wire_scenarios import (SCRIPT, STORY, black_hole_mid_utterance, cancelled_by_device,
                            conversation_through_latency)

pytestmark = pytest.mark.slow


def _mic_frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i:i + FRAME_SAMPLES] for i in range(0, len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES,
                                                    FRAME_SAMPLES)]


@pytest.mark.parametrize("fmt", ["pcm16", "g711_ulaw", "g711_alaw"])
@pytest.mark.parametrize("frame_ms", [20, 40])
def test_every_append_is_one_frame_and_the_stream_is_sample_exact(tmp_path, fmt, frame_ms):
    """Each append carries exactly one frame of the configured length in the session's format, and
    the bytes the server got are exactly the microphone's audio encoded as one stream."""
    pcm = dithered(user_audio([(0.3, "Hello.")], trailing_s=2.0))
    with DevServer(api_key=KEY, script=SCRIPT, frame_ms=frame_ms) as server:
        with Run(tmp_path, server, pcm, session={"input_audio_format": fmt, "frame_ms": frame_ms,
                                                 "follow_up_s": 0.5}) as run:
            run.join(40)
    session = server.sessions[0]
    assert list(session.append_sizes) == [frame_bytes(fmt, frame_ms)]
    assert session.transcripts == ["hello"]
    # The user's turn (every append before the reply was asked for) is the microphone's audio
    # from the start of the input, encoded as one stream, byte for byte.
    kinds = [e["type"] for e in session.client_events]
    turn = kinds[:kinds.index("response.create")].count("input_audio_buffer.append")
    received = bytes(session.input_audio[:turn * frame_bytes(fmt, frame_ms)])
    encoder, expected = FrameEncoder(fmt, frame_ms), b""
    for frame in _mic_frames(pcm):
        expected += b"".join(encoder.push(frame))
    assert turn * frame_ms >= 1000  # more than a second of the user's audio reached the server
    assert received == expected[:len(received)]
    check_all_events(session)


@pytest.mark.parametrize("reply_delay_ms", [0, 400])
def test_frames_in_flight_at_the_end_of_speech_never_cancel_the_reply(tmp_path, reply_delay_ms):
    """150 ms each way between device and server, a server that answers the instant it is asked
    (or 400 ms later): frames still on the wire when the server's VAD ends the turn arrive before
    the reply is asked for, so the reply streams and plays whole."""
    server = conversation_through_latency(tmp_path, one_way_s=0.15, reply_delay_ms=reply_delay_ms)
    session = server.sessions[0]
    assert cancelled_by_device(server) == 0
    assert session.replies[0].status == "completed" and session.replies[0].text == STORY
    # The turn's last append went before the request for the reply, on the same ordered socket.
    kinds = [e.get("type") for e in session.client_events]
    first_create = kinds.index("response.create")
    assert kinds.index("input_audio_buffer.append") < first_create
    assert session.turns and session.turns[0].transcript == "tell me a story"
    check_all_events(session)


def test_a_black_hole_mid_utterance_with_the_default_settings_keeps_the_utterance_whole(tmp_path):
    """With the shipped ping settings, a server that stops answering as the user starts to speak
    is found dead while the turn's audio is still kept; the next session hears it all."""
    r = black_hole_mid_utterance(tmp_path)
    assert r.detect_s < 4.5, "found dead within turn_liveness_s (3 s) and a little"
    assert "stopped answering pings" in r.reason
    assert r.dropped_turns == 0 and r.cancelled_by_device == 0
    assert r.transcript == "tell me a story"
    assert r.missing == 0


def test_a_reset_while_the_user_speaks_and_while_a_reply_streams_loses_nothing(tmp_path):
    """Two resets against a server that answers at once: one mid-utterance (the utterance goes whole
    to the next session), one mid-reply (the reply is asked again and plays whole); no reply is
    ever cancelled by the device's own frames."""
    pcm = dithered(user_audio([(0.5, "Tell me a story.")], trailing_s=14.0))
    with DevServer(api_key=KEY, script=SCRIPT) as server, FaultProxy(server.port) as proxy:
        run = Run(tmp_path, proxy, pcm, session={"follow_up_s": 1.0}, reconnect={"base_s": 0.2})
        retune(run, server={"url": proxy.url})
        watch = Watch(run)
        with run:
            assert server.wait_for(lambda: server.sessions and server.sessions[0].events(
                "input_audio_buffer.speech_started"), timeout=10)
            time.sleep(0.3)
            proxy.cut()
            first_drop = watch.wait(State.RECONNECTING)
            speaking = watch.wait(State.SPEAKING, after=first_drop.at, timeout=15)
            time.sleep(0.2)
            proxy.cut()
            watch.wait(State.RECONNECTING, after=speaking.at)
            run.join(40)
    assert cancelled_by_device(server) == 0
    assert run.conversation.counters["dropped_turns"] == 0
    heard = [s for s in server.sessions if s.turns]
    assert heard[0].turns[0].transcript == "tell me a story"
    assert server.sessions[-1].replies[-1].status == "completed"
    assert server.sessions[-1].replies[-1].text == STORY
    for s in server.sessions:
        check_all_events(s)

"""End to end: the conversation loop, the file audio backend and the local Mira server, for real."""

import time

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.wavfile import read_wav
from agent.demo import speak, user_audio
from agent.devserver import DevServer
from agent.state import State
from harness import KEY, Run, check_all_events, frames_in_order
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_turns() -> np.ndarray:
    return user_audio()


@pytest.fixture
def server():
    with DevServer(api_key=KEY) as s:
        yield s


def test_demo_conversation_end_to_end(tmp_path, server, two_turns):
    """Wake word, two spoken turns and a tool call: the server hears exactly the audio after the wake word."""
    with Run(tmp_path, server, two_turns, trigger_on_start=False) as run:
        run.join()
    assert run.code == 0
    session = server.last_session
    assert session.transcripts == ["what time is it", "turn on the light"]
    assert [o["output"].strip() for o in session.function_outputs] == ["light on=true"]
    check_all_events(session)
    # Sample-exact: the server got the microphone's samples from the wake word's detection
    # point on, with no gap, then (after the reply) more whole frames, in order.
    hit = run.conversation.last_detection
    wake_end = 0.5 * SAMPLE_RATE + len(speak("Hey Jarvis,"))
    assert abs(hit.sample_offset - wake_end) < 0.6 * SAMPLE_RATE
    sent = session.input_pcm()
    frame_end = (hit.frame_index + 1) * FRAME_SAMPLES
    start = hit.sample_offset - run.config.settings.wake.lookback_ms * SAMPLE_RATE // 1000
    head = frame_end - start
    assert np.array_equal(sent[:head], two_turns[start:frame_end])
    idx = frames_in_order(sent[head:], two_turns, start=hit.frame_index + 1)
    run_len = next((k for k in range(1, len(idx)) if idx[k] != idx[k - 1] + 1), len(idx))
    assert idx[:run_len] == list(range(hit.frame_index + 1, hit.frame_index + 1 + run_len))
    first_speech_end = int((0.5 * SAMPLE_RATE + len(speak("Hey Jarvis, what time is it?"))) / FRAME_SAMPLES)
    assert idx[run_len - 1] >= first_speech_end
    # The reply audio written is exactly what the server sent (volume 100 %, nothing lost).
    sent_down = np.concatenate([np.frombuffer(bytes(r.audio), "<i2") for r in session.replies])
    assert np.array_equal(read_wav(tmp_path / "reply.wav"), sent_down)
    assert run.states[:5] == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING]
    assert State.FOLLOW_UP in run.states and run.states[-1] is State.IDLE


@pytest.mark.parametrize("fmt", ["g711_ulaw", "g711_alaw"])
def test_g711_both_ways(tmp_path, server, fmt):
    """G.711 up and down: the server recognises the speech and the reply is played at 24 kHz."""
    pcm = user_audio([(0.3, "Hello.")], trailing_s=3.0)
    with Run(tmp_path, server, pcm, session={"input_audio_format": fmt, "output_audio_format": fmt}) as run:
        run.join()
    session = server.last_session
    assert session.transcripts == ["hello"]
    check_all_events(session)
    reply = read_wav(tmp_path / "reply.wav")
    sent_8k = sum(len(r.audio) for r in session.replies)
    assert abs(len(reply) - 3 * sent_8k) <= 3 * 80  # 8 kHz -> 24 kHz, up to 10 ms of filter tail
    assert np.abs(reply.astype(np.int32)).max() > 1000


def test_barge_in_by_button_truncates_at_what_was_played(tmp_path, server):
    """A press while the assistant speaks flushes playback and truncates the item at the samples played."""
    pcm = user_audio([(0.3, "Tell me a story.")], trailing_s=6.0)
    with Run(tmp_path, server, pcm, audio={"realtime": True}) as run:
        run.wait_state(State.SPEAKING)
        time.sleep(1.0)
        run.conversation.on_button("pressed")
        server.recorder.wait_for(lambda: any(r.truncated_ms is not None for r in server.last_session.replies))
        run.join()
    session = server.last_session
    reply = session.replies[0]
    played = len(read_wav(tmp_path / "reply.wav"))
    assert run.conversation.counters["barge_ins"] == 1
    truncates = [e for e in session.client_events if e.get("type") == "conversation.item.truncate"]
    assert len(truncates) == 1 and truncates[0]["item_id"] == reply.item_id
    # audio_end_ms is the audio really played (the sink holds exactly that), within a frame.
    assert abs(truncates[0]["audio_end_ms"] - played * 1000 / SAMPLE_RATE) <= 20
    assert 500 <= truncates[0]["audio_end_ms"] < len(reply.audio) / 2 * 1000 / SAMPLE_RATE
    done = [e["response"]["status"] for e in session.events("response.done")]
    assert done[0] == "cancelled"
    check_all_events(session)


def test_refused_key_goes_to_error_without_a_retry_storm(tmp_path, two_turns):
    """A server that refuses the key: ERROR state, one attempt, a sentence naming the key's sources,
    and (--exit-when-done) exit status 78: only a person can fix a key."""
    with DevServer(api_key="sk-other") as server:
        pcm = user_audio([(0.3, "Hello.")], trailing_s=2.0)
        with Run(tmp_path, server, pcm) as run:
            run.wait_state(State.ERROR)
            time.sleep(1.5)
            assert len(server.recorder.handshakes) == 1
            run.join()
        assert run.code == 78


def test_bad_server_messages_are_skipped_and_the_turn_completes(tmp_path, server):
    """Garbage from the server mid-conversation is logged and skipped; the reply still plays."""
    pcm = user_audio([(0.3, "Hello.")], trailing_s=3.0)
    garbage = ["{nope", "[1,2]", '{"type": "response.audio.delta", "item_id": "x", "delta": "@@"}',
               '{"type": "error", "error": 5}', '{"type": "brand.new.event"}']
    with Run(tmp_path, server, pcm) as run:
        run.wait_state(State.LISTENING)
        for g in garbage:
            server.send_raw(g)
        run.join()
    assert run.conversation.counters["bad_frames"] == 4
    assert server.last_session.transcripts == ["hello"]
    assert len(read_wav(tmp_path / "reply.wav")) > SAMPLE_RATE // 2

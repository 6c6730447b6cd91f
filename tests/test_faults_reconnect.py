"""Reconnects mid-conversation over real sockets: a killed server, a black hole, each network fault."""

import logging
import time

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.devserver.script import Entry, Script
from agent.realtime import retry
from agent.state import State
from fault_proxy import FaultProxy, Watch, dithered, input_frames, retune
from harness import KEY, Run, check_all_events
from wire_scenarios import every_network_fault

pytestmark = pytest.mark.slow

FRAMES_PER_S = 50
SHORT = Script(entries=(Entry("tell me a story", reply="The end."), Entry("hello", reply="Hi.")))


def silence(seconds: float, seed: int = 3) -> np.ndarray:
    return dithered(np.zeros(int(seconds * SAMPLE_RATE), np.int16), seed)


def test_server_killed_mid_reply_and_back_2s_later_resumes_and_loses_no_frame(tmp_path):
    """Killed while speaking, back 2 s later on the same port: session.update, history replayed,
    every frame captured from the drop on reaches the new session in order, the reply is asked again."""
    pcm = dithered(user_audio([(0.3, "Tell me a story.")], trailing_s=8.0))
    first = DevServer(api_key=KEY)
    port = first.start()
    run = Run(tmp_path, first, pcm, session={"follow_up_s": 1.0})
    watch = Watch(run)
    with run:
        run.wait_state(State.SPEAKING)
        time.sleep(0.3)
        first.silence_connections()   # a killed process: the socket dies with no close frame
        first.stop()
        killed = time.monotonic()
        dropped = watch.wait(State.RECONNECTING)
        time.sleep(max(0.0, killed + 2.0 - time.monotonic()))
        with DevServer(port=port, api_key=KEY, script=SHORT) as second:
            back = time.monotonic()
            resumed = watch.wait(State.LISTENING, after=dropped.at)
            run.join(40)
    assert resumed.at > back
    old, new = first.sessions[-1], second.sessions[0]
    assert len(second.sessions) == 1
    kinds = [e.get("type") for e in new.client_events]
    assert kinds[0] == "session.update"
    replay = new.client_events[1]
    assert replay["type"] == "conversation.item.create" and replay["item"]["role"] == "user"
    assert replay["item"]["content"][0]["text"] == "tell me a story"
    assert "response.create" in kinds and kinds.index("response.create") > kinds.index("input_audio_buffer.append")
    # Sample-exact: the first session got frames 0..k in order; the new one starts with exactly
    # the frames captured from the drop until it opened, none missing, none repeated.
    before, after = input_frames(old, pcm), input_frames(new, pcm)
    assert before == list(range(len(before)))
    outage = list(range(dropped.frames, resumed.frames))
    assert len(outage) >= 2 * FRAMES_PER_S
    assert after[:len(outage)] == outage
    assert not set(before) & set(after)
    assert new.replies[0].status == "completed" and new.replies[0].text == "The end."
    assert run.states[-1] in (State.IDLE, State.LISTENING)
    check_all_events(new)


def test_blackholed_socket_is_caught_by_the_ping_timeout_in_the_configured_time(tmp_path):
    """Packets black-holed with no FIN: the ping timeout declares the socket dead within interval + timeout."""
    with DevServer(api_key=KEY) as server, FaultProxy(server.port) as proxy:
        run = Run(tmp_path, proxy, silence(12.0), session={"follow_up_s": 1.0})
        retune(run, server={"url": proxy.url, "ping_interval_s": 1.0, "ping_timeout_s": 1.0})
        watch = Watch(run)
        with run:
            watch.wait(State.LISTENING)
            time.sleep(0.5)
            proxy.blackhole()
            holed = time.monotonic()
            dropped = watch.wait(State.RECONNECTING, timeout=10)
            watch.wait(State.LISTENING, after=dropped.at, timeout=10)
            run.conversation.stop()
            run.join(10)
    took = dropped.at - holed
    assert 1.0 <= took <= 1.0 + 1.0 + 0.5, took
    assert "stopped answering pings" in dropped.reason
    assert len(server.sessions) == 2


def test_each_network_fault_is_retried_and_no_frame_is_lost(tmp_path, caplog):
    """Refused, reset, close 1001, close 1011, session_expired and a 503 handshake: each classified
    RETRY, reconnected, and the microphone stream across all sessions has no gap; what a session
    got twice is only the unconfirmed tail of the one before."""
    caplog.set_level(logging.WARNING, logger="agent.conversation")
    r = every_network_fault(tmp_path, pause_s=1.5)  # sessions of >= 75 frames
    reasons, attempts = r.reasons, r.attempts
    assert "refused the connection" in caplog.text
    assert "HTTP 503" in caplog.text
    assert "(1001" in reasons["close 1001"] and "(1011" in reasons["close 1011"]
    assert "session_expired" in reasons["session_expired"]
    assert "was lost" in reasons["reset"] and "was lost" in reasons["refused"]
    assert r.errors == 0
    # A session that stayed up past stable_s resets the backoff: one delay from base, then back.
    assert all(attempts[n] == 1 for n in ("reset", "close 1001", "close 1011", "session_expired"))
    assert attempts["refused"] > 1 and attempts["handshake 503"] > 1
    # Every frame the microphone gave reached a session, in order, none missing. A new session
    # starts with what the lost one was sent after it last confirmed what it had read (a frame in
    # flight at a reset may or may not have arrived): at most a ping interval of it again.
    assert r.lost == 0 and r.disorder == 0, (r.lost, r.disorder, r.overlaps)
    # Typically CONFIRM_S and the pong's way back (~10 frames); a loaded machine can hold a pong
    # back, so the bound is what no resend-everything regression meets: under a session's length.
    assert sorted(r.overlaps)[len(r.overlaps) // 2] <= 25, r.overlaps
    assert max(r.overlaps) <= 60, r.overlaps
    assert len(set(r.got)) >= r.processed - 5  # all but the last moment's frames (stop) reached a server
    assert r.sessions >= 7


def test_drop_while_the_user_speaks_carries_the_whole_utterance_to_the_new_session(tmp_path):
    """A drop mid-utterance: the old session never committed the turn, so the new session gets the
    utterance from its start (not only the words after the drop) and answers it."""
    pcm = dithered(user_audio([(0.3, "Tell me a story.")], trailing_s=5.0))
    with DevServer(api_key=KEY, script=SHORT) as server:
        run = Run(tmp_path, server, pcm, session={"follow_up_s": 1.0}, reconnect={"base_s": 0.1})
        watch = Watch(run)
        with run:
            server.recorder.wait_for(lambda: server.sessions and server.sessions[0].events(
                "input_audio_buffer.speech_started"), timeout=10)
            time.sleep(0.15)  # mid-word (the utterance lasts about 1.2 s)
            server.abort_connections()
            run.join(30)
    old, new = server.sessions[0], server.sessions[1]
    assert not old.turns  # the drop came before the turn was committed
    speech_start = old.events("input_audio_buffer.speech_started")[0]["audio_start_ms"] // 20
    after = input_frames(new, pcm)
    assert after[0] <= speech_start, (after[0], speech_start)
    gap = next((k for k in range(1, len(after)) if after[k] != after[k - 1] + 1), len(after))
    dropped = next(m for m in watch.marks if m.state is State.RECONNECTING)
    assert after[gap - 1] >= dropped.frames  # one unbroken run from the utterance's start past the drop
    assert new.transcripts == ["tell me a story"] and new.replies[0].text == "The end."
    assert watch.marks[-1].state is State.IDLE


def test_tls_failure_is_a_retried_network_fault():
    """wss:// to a server that does not speak TLS: a TLS failure, named as one, classified RETRY."""
    import queue

    from agent.errors import ConnectionFailed
    from agent.realtime.client import Closed, RealtimeConnection
    from agent.realtime.settings import ServerSettings

    with DevServer(api_key=KEY) as server:
        got: queue.Queue = queue.Queue()
        conn = RealtimeConnection(ServerSettings(url=f"wss://127.0.0.1:{server.port}/v1/realtime",
                                                 connect_timeout_s=3), KEY, got.put)
        conn.open()
        closed = got.get(timeout=5)
        conn.close()
    assert isinstance(closed, Closed) and isinstance(closed.failure, ConnectionFailed)
    assert "TLS" in str(closed.failure)
    assert retry.classify(closed.failure) is retry.Verdict.RETRY


def test_a_refused_connection_is_told_apart_from_other_faults():
    """retry.is_refused: true for a refused connection (nothing listens), false for a TLS failure."""
    import queue
    import socket

    from agent.realtime.client import RealtimeConnection
    from agent.realtime.settings import ServerSettings

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    outcomes = []
    with DevServer(api_key=KEY) as server:
        for url in (f"ws://127.0.0.1:{port}/v1/realtime", f"wss://127.0.0.1:{server.port}/v1/realtime"):
            got: queue.Queue = queue.Queue()
            conn = RealtimeConnection(ServerSettings(url=url, connect_timeout_s=3), KEY, got.put)
            conn.open()
            outcomes.append(got.get(timeout=5).failure)
            conn.close()
    refused, tls = outcomes
    assert retry.is_refused(refused) and "refused" in str(refused)
    assert not retry.is_refused(tls)
    assert retry.classify(refused) is retry.classify(tls) is retry.Verdict.RETRY

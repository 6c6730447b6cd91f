"""Fuzz the daemon with seeded hostile server frames, mid-conversation, over real sockets on 127.0.0.1."""

import json
import logging
import queue
import random
import threading
import time

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.devserver.script import Entry, Script
from agent.realtime.client import MAX_FRAME_BYTES, Closed, RealtimeConnection
from agent.realtime.retry import Verdict, classify
from agent.realtime.settings import ServerSettings
from agent.state import State
from fault_proxy import Watch, dithered, hostile_server_frame, send_hostile
from harness import KEY, Run

SHORT = Script(entries=(Entry("hello", reply="Hi."),), fallback="Pardon?", tool_reply="Done.")
SETTLED = (State.IDLE, State.LISTENING)


class Ticks:
    """A stand-in watchdog: records when the conversation loop kicks it, to find stalls."""

    def __init__(self):
        self.at: list[float] = []

    def kick(self) -> None:
        self.at.append(time.monotonic())

    def longest_gap(self, start: float, end: float) -> float:
        times = [t for t in self.at if start <= t <= end]
        return float(max(np.diff([start, *times, end])))


def logged_bad(records) -> list[str]:
    return [r.getMessage() for r in records if any(
        k in r.getMessage() for k in ("bad message from the server", "server reported an error", "reply ended with status"))]


def deliver(server, frame, timeout: float = 10.0) -> None:
    """Send one hostile frame, waiting (bounded) for a session when a previous frame forced a reconnect."""
    deadline = time.monotonic() + timeout
    while send_hostile(server, frame) == 0:
        assert time.monotonic() < deadline, "no session came back after a hostile frame"
        time.sleep(0.01)


def processed(server, caplog, name: str, timeout: float = 20.0) -> None:
    """Wait until the conversation has handled every frame sent so far: a marker event behind them,
    logged at INFO when handled (events are handled in order)."""
    marker = json.dumps({"type": "conversation.item.input_audio_transcription.delta", "event_id": "e",
                         "item_id": f"marker_{name}", "content_index": 0, "delta": name})
    deliver(server, ("text", marker))
    deadline = time.monotonic() + timeout
    while f"user (partial): {name}" not in caplog.text:
        assert time.monotonic() < deadline, f"the marker after {name} was never handled"
        time.sleep(0.02)


def kind_of(line: str) -> str:
    """What kind of message a logged line is: the bad frame's error up to its first colon, the
    server's error code, or the reply's status."""
    if "bad message" in line:
        return line.split("server: ", 1)[1].split(":")[0]
    if "reported an error" in line:
        return "error:" + line.split("error: ", 1)[1].split(":")[0]
    return "status:" + line.split("status ", 1)[1].split(":")[0]


def settle(run, timeout: float = 30.0) -> None:
    """Wait until the conversation rests (IDLE or LISTENING for 1 s); a hang fails here."""
    deadline, since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if run.conversation.state in SETTLED and run.conversation.speaker.drained():
            since = since or time.monotonic()
            if time.monotonic() - since >= 1.0:
                return
        else:
            since = None
        time.sleep(0.02)
    c = run.conversation
    raise AssertionError(f"the conversation never came to rest; states: {run.states[-12:]}; active response "
                         f"{c.ledger and c.ledger.active_response}, speaker drained {c.speaker.drained()}, "
                         f"tools running {c._tools_running}, queued {c.speaker.buffer.queued_samples}, "
                         f"segments {list(c.speaker.buffer._segments)[-3:]}, pos {c.speaker.buffer._pos}, "
                         f"heard {c.speaker.buffer._heard()}, threads {[t.name for t in threading.enumerate()]}")


@pytest.mark.slow
def test_hostile_server_frames_never_crash_or_hang_and_the_next_conversation_works(tmp_path, caplog):
    """800 seeded hostile frames of every kind mid-conversation: no crash, no stall of the loop, bad
    frames logged at most once a minute per kind (a second batch adds almost no line), and a spoken
    turn afterwards gets its reply."""
    caplog.set_level(logging.INFO)
    hello = user_audio([(0.2, "Hello.")], trailing_s=2.0)
    pcm = dithered(np.concatenate([np.zeros(int(3.0 * SAMPLE_RATE), np.int16)] + [hello] * 8))
    rng1, rng2 = random.Random(1), random.Random(2)
    batch1 = [hostile_server_frame(rng1) for _ in range(500)]
    batch2 = [hostile_server_frame(rng2) for _ in range(300)]
    crashes = []
    with DevServer(api_key=KEY, script=SHORT) as server:
        run = Run(tmp_path, server, pcm, session={"follow_up_s": 1.0}, reconnect={"base_s": 0.2})
        ticks = run.conversation._watchdog = Ticks()
        watch = Watch(run)
        hook, threading.excepthook = threading.excepthook, crashes.append
        try:
            with run:
                watch.wait(State.LISTENING)
                start = time.monotonic()
                for frame in batch1:
                    deliver(server, frame)
                processed(server, caplog, "batch-1")
                lines1 = len(logged_bad(caplog.records))
                for frame in batch2:
                    deliver(server, frame)
                processed(server, caplog, "batch-2")
                fuzzed = time.monotonic()
                lines2 = len(logged_bad(caplog.records)) - lines1
                settle(run)
                assert run.thread.is_alive(), "the conversation thread died"
                heard = sum(t.transcript == "hello" for s in server.sessions for t in s.turns)
                if run.conversation.state is State.IDLE:
                    run.conversation.trigger("button")   # the next conversation, by a press
                server.recorder.wait_for(lambda: sum(t.transcript == "hello" for s in server.sessions
                                                     for t in s.turns) > heard, timeout=20)
                server.recorder.wait_for(lambda: any(r.text == "Hi." and r.status == "completed"
                                                     for r in server.last_session.replies), timeout=10)
                run.conversation.stop()
                run.join(10)
        finally:
            threading.excepthook = hook
    assert not crashes and run.code == 0
    assert ticks.longest_gap(start, fuzzed) < 0.5, "the conversation loop stalled"
    assert run.conversation.counters["bad_frames"] >= 200
    kinds = [kind_of(m) for m in logged_bad(caplog.records)]
    assert len(kinds) == len(set(kinds)), kinds                # at most once a minute per kind
    assert lines2 <= 8, logged_bad(caplog.records)[lines1:]   # more of the same: held back, no flood


def _frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    head = bytes([first, n]) if n < 126 else (bytes([first, 126]) + n.to_bytes(2, "big") if n < 65536
                                              else bytes([first, 127]) + n.to_bytes(8, "big"))
    return head + payload


@pytest.mark.parametrize("bomb", ["one frame announcing 2**62 bytes", "a message in endless fragments"])
def test_oversized_messages_are_refused_before_they_are_read(bomb):
    """A memory bomb is stopped at the frame header (or as fragments add up): close 1009, a retryable
    failure, and the client never holds much more than the limit."""
    with DevServer() as server:
        got: queue.Queue = queue.Queue()
        conn = RealtimeConnection(ServerSettings(url=server.url), "k", got.put)
        conn.open()
        assert got.get(timeout=5).type == "session.created"
        if bomb.startswith("one"):
            server.write_raw(_frame(0x1, b'{"type": "x", "delta": "', length=2**62))
        else:
            chunk = b"A" * (1 << 20)
            server.write_raw(_frame(0x1, chunk, fin=False))
            for _ in range(6):
                server.write_raw(_frame(0x0, chunk, fin=False))
        closed = got.get(timeout=5)
        while not isinstance(closed, Closed):
            closed = got.get(timeout=5)
        conn.close()
        record = server.recorder.wait_for(lambda: server.last_session.closed and server.last_session)
    assert "over the" in str(closed.failure) and "1009" in str(closed.failure)
    assert classify(closed.failure) is Verdict.RETRY
    assert conn.bytes_received < MAX_FRAME_BYTES
    assert record.close_code in (1009, 1006)

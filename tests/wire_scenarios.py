"""Scenarios on the wire that a test asserts once and a benchmark repeats: each runs the real
conversation against the project's server through a fault proxy on 127.0.0.1 and returns what
happened, assertion-free."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.demo import user_audio
from agent.devserver import DevServer
from agent.devserver.script import Entry, Script
from agent.state import State
from fault_proxy import FaultProxy, Watch, dithered, input_frames, retune
from harness import KEY, Run

STORY = "Once upon a time there was a small robot who lived in a lighthouse by the sea."
SCRIPT = Script(entries=(Entry("tell me a story", reply=STORY), Entry("hello", reply="Hi there.")))


def silence(seconds: float, seed: int = 3) -> np.ndarray:
    return dithered(np.zeros(int(seconds * SAMPLE_RATE), np.int16), seed)


@dataclass
class FaultRound:
    """What one round of every network fault did to a stream of microphone frames."""

    reasons: dict[str, str] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    """Backoff attempts counted when each fault's reconnect succeeded."""
    got: list[int] = field(default_factory=list)
    """Microphone frame indices the servers received, in order, over all sessions."""
    per_session: list[list[int]] = field(default_factory=list)
    """The same, session by session."""
    processed: int = 0
    """Frames the conversation had processed when it was asked to stop."""
    sessions: int = 0
    errors: int = 0
    """Times the conversation showed ERROR."""

    @property
    def lost(self) -> int:
        """Frames missing inside the received stream (never sent, or lost on the way)."""
        return (self.got[-1] + 1 - len(set(self.got))) if self.got else 0

    @property
    def repeated(self) -> int:
        """Frames a session got again at its start: the lost session may have had them (they were
        in flight, unconfirmed, when it died)."""
        return len(self.got) - len(set(self.got))

    @property
    def disorder(self) -> int:
        """Frames out of order within a session, or a session that skips ahead of the last."""
        inside = sum(1 for s in self.per_session for a, b in zip(s, s[1:]) if b != a + 1)
        sessions = [s for s in self.per_session if s]
        skips = sum(1 for a, b in zip(sessions, sessions[1:]) if b[0] > a[-1] + 1)
        return inside + skips

    @property
    def overlaps(self) -> list[int]:
        """Per drop, the frames the new session got that the old one had too."""
        sessions = [s for s in self.per_session if s]
        return [max(0, a[-1] + 1 - b[0]) for a, b in zip(sessions, sessions[1:])]


def every_network_fault(tmp: Path, *, pause_s: float = 0.6) -> FaultRound:
    """Refused, reset, close 1001, close 1011, session_expired and a 503 handshake, one after the
    other while the device streams (quiet) audio, each healed, each reconnected."""
    pcm = silence(24.0)
    out = FaultRound()
    with DevServer(api_key=KEY) as server, FaultProxy(server.port) as proxy:
        run = Run(tmp, proxy, pcm, session={"follow_up_s": 1.0},
                  reconnect={"base_s": 0.2, "stable_s": 0.5})
        retune(run, server={"url": proxy.url})
        faults = {
            "refused": lambda: (proxy.refuse(), proxy.cut()),
            "reset": proxy.cut,
            "close 1001": lambda: server.close_connections(1001),
            "close 1011": lambda: server.close_connections(1011),
            "session_expired": server.expire_sessions,
            "handshake 503": lambda: (setattr(server.faults, "refuse_status", 503), proxy.cut()),
        }
        heals = {"refused": proxy.listen,
                 "handshake 503": lambda: setattr(server.faults, "refuse_status", None)}
        watch = Watch(run)
        with run:
            ready = watch.wait(State.LISTENING)
            for name, inject in faults.items():
                time.sleep(pause_s)  # up longer than stable_s: the backoff starts again from base
                inject()
                drop = watch.wait(State.RECONNECTING, after=ready.at)
                if name in heals:
                    time.sleep(0.8)  # a few attempts fail first
                    heals[name]()
                ready = watch.wait(State.LISTENING, after=drop.at, timeout=10)
                out.reasons[name] = drop.reason
                out.attempts[name] = run.conversation.backoff.attempt
            out.processed = watch.frames  # frames handled before the stop was asked for
            run.conversation.stop()
            run.join(10)
        out.per_session = [input_frames(record, pcm) for record in server.sessions]
        out.got = [i for frames in out.per_session for i in frames]
        out.sessions = len([s for s in server.sessions if s.client_events])
        out.errors = run.states.count(State.ERROR)
    return out


@dataclass
class BlackHole:
    """A server that went silent while the user spoke, with the shipped settings."""

    detect_s: float
    """From the black hole to the drop being noticed."""
    reason: str
    transcript: str
    """What the next session heard as the user's turn."""
    missing: int
    """Frames of the utterance (from its first loud frame) the next session never got."""
    dropped_turns: int
    cancelled_by_device: int


def black_hole_mid_utterance(tmp: Path, lead_s: float = 0.5) -> BlackHole:
    """"Tell me a story." said at lead_s; the link black-holed as the server hears it begin."""
    pcm = dithered(user_audio([(lead_s, "Tell me a story.")], trailing_s=12.0))
    with DevServer(api_key=KEY, script=SCRIPT) as server, FaultProxy(server.port) as proxy:
        run = Run(tmp, proxy, pcm, session={"follow_up_s": 1.0})
        retune(run, server={"url": proxy.url})
        watch = Watch(run)
        with run:
            server.wait_for(lambda: server.sessions and server.sessions[0].events(
                "input_audio_buffer.speech_started"), timeout=10)
            proxy.blackhole()
            holed = time.monotonic()
            dropped = watch.wait(State.RECONNECTING, timeout=20)
            run.join(40)
    heard = next((s for s in server.sessions[1:] if s.turns), None)
    first_loud = next(i for i in range(len(pcm) // FRAME_SAMPLES)
                      if np.abs(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]).max() > 300)
    last_loud = max(i for i in range(len(pcm) // FRAME_SAMPLES)
                    if np.abs(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]).max() > 300)
    got = set(input_frames(heard, pcm)) if heard else set()
    return BlackHole(dropped.at - holed, dropped.reason, heard.turns[0].transcript if heard else "",
                     sum(1 for i in range(first_loud, last_loud + 1) if i not in got),
                     run.conversation.counters["dropped_turns"], cancelled_by_device(server))


def cancelled_by_device(server: DevServer) -> int:
    """Replies the server cancelled because an append arrived while their audio streamed."""
    done = [e["response"] for s in server.sessions for e in s.events("response.done")]
    return sum(1 for r in done if (r.get("status_details") or {}).get("reason") == "turn_detected")


def conversation_through_latency(tmp: Path, *, one_way_s: float, reply_delay_ms: int,
                                 fmt: str = "pcm16", frame_ms: int = 20) -> DevServer:
    """One spoken request and its reply, with latency each way; the server (stopped) to read."""
    pcm = dithered(user_audio([(0.3, "Tell me a story.")], trailing_s=9.0))
    with DevServer(api_key=KEY, script=SCRIPT, reply_delay_ms=reply_delay_ms,
                   frame_ms=frame_ms) as server, FaultProxy(server.port) as proxy:
        proxy.delay_s = one_way_s
        run = Run(tmp, proxy, pcm, session={"follow_up_s": 1.0, "input_audio_format": fmt,
                                            "frame_ms": frame_ms})
        retune(run, server={"url": proxy.url})
        with run:
            run.join(40)
    return server

"""The session link: one conversation's connection to Mira, kept across drops.

The conversation asks the link to send a frame, end a turn, return tool outputs, ask for a reply
or cancel one. The link opens and configures sessions, replays the history into a new one,
keeps the microphone audio no session has heard yet, and owes the next session whatever a drop
cut off (`Owed`). It tells its listener four things only: a session is ready, an event arrived,
the link is reconnecting (and why), or it gave up (and why).

The device, not the server, decides when a reply starts: server VAD ends and commits the user's
turn, but `create_response` is off, and the link asks for the reply itself when the conversation
has stopped sending. Every append of that turn was written to the socket before the
`response.create`, so none can reach the server while the reply's audio streams (Mira cancels a
reply on any append during its audio). The cost is one network round trip.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from agent.audio.base import FRAME_MS
from agent.audio.codec import FrameEncoder
from agent.config import Config
from agent.errors import ConnectionFailed
from agent.ratelog import RateLimitedLog
from agent.realtime import events as ev
from agent.realtime.client import BadFrame, Closed, RealtimeConnection
from agent.realtime.retry import (Backoff, UptimeJudge, Verdict, auth_hint, classify, is_auth_error,
                                  is_expiry, is_refused)
from agent.session import History, SessionLedger

log = logging.getLogger(__name__)

WAITING_RETRY_S = 1.0  # longest wait between attempts while a turn is held and the server is down
SPEECH_FLOOR_DB = -55.0  # a frame louder than this (dBFS RMS) may be the start of an utterance


def _level_db(frame: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64))))
    return 20 * np.log10(max(rms, 1.0) / 32768.0)


@dataclass(frozen=True)
class ToolOutcome:
    """A finished tool call, ready to go back to the model."""

    call_id: str
    name: str
    output: str
    ok: bool
    arguments: str = ""
    connection: int = 0
    """The connection the call arrived on: another one must be shown the call before its output."""


@dataclass
class Owed:
    """What a dropped connection leaves for the next one."""

    frames: deque = field(default_factory=deque)
    """Microphone audio no session has heard: held while no session was ready, or sent to one
    that dropped before it committed the turn. Sent first, in order."""
    outputs: list[ToolOutcome] = field(default_factory=list)
    """Tool results the next session must get (each with its call replayed first)."""
    reply: bool = False
    """A reply was asked for and did not finish: the next session is asked again."""

    def clear(self) -> None:
        self.frames.clear()
        self.outputs.clear()
        self.reply = False


class LinkListener(Protocol):
    """What the link tells the conversation (on the conversation thread)."""

    def link_ready(self, resumed: bool, redelivered: str | None) -> None:
        """A session is open and configured; `redelivered` says what was owed and sent again."""

    def link_event(self, event) -> None:
        """A server event for the conversation."""

    def link_reconnecting(self, failure: ConnectionFailed, delay: float) -> None:
        """The connection dropped mid-conversation; the next attempt is in `delay` s."""

    def link_gave_up(self, failure: ConnectionFailed, auth: bool) -> None:
        """No session can be had: the key was refused (auth) or the held audio ran out of time."""


class SessionLink:
    """The connection of one conversation at a time; `open()` starts one, `close()` ends it."""

    def __init__(self, config: Config, api_key: str, listener: LinkListener,
                 post: Callable[..., None], *, clock: Callable[[], float],
                 connect: Callable[..., RealtimeConnection] = RealtimeConnection,
                 backoff: Backoff | None = None):
        s = config.settings
        self.config = config
        self.key = api_key
        self._listener = listener
        self._post = post
        self._clock = clock
        self._connect = connect
        self.backoff = backoff or Backoff(s.reconnect.base_s, s.reconnect.cap_s)
        self._uptime = UptimeJudge(s.reconnect.stable_s)
        self._ratelog = RateLimitedLog(log)
        self.conn: RealtimeConnection | None = None
        self.ledger: SessionLedger | None = None
        self.history = History()
        self.owed = Owed()
        self.tools = None                 # the toolbox, for the declarations sent at configure
        self.manual = False               # the open session has server VAD off
        self.connection = 0               # +1 per connection opened
        self.generation = 0               # +1 per conversation (open .. close)
        # Sent since the last turn boundary, each with the connection's event count after it (an
        # utterance longer than buffer_s resends its end).
        self._unheard: deque[tuple[np.ndarray, int]] = deque(maxlen=self._frames(s.reconnect.buffer_s))
        self._encoder: FrameEncoder | None = None
        self._reply_wanted = False        # response.create deferred until the active one ends
        self._speech = False              # the server's VAD heard the user start, not yet stop
        self._broken = False              # a send failed: hold frames until the drop is handled
        self._brisk = False               # a turn is in progress: brisk keepalive pings
        self._reconnect_at: float | None = None
        self._deadline: float | None = None
        self._held = 0                    # frames held since the last session was ready
        self._last_heard: float | None = None  # when a lost connection's server last spoke
        self.counters = {"sessions": 0, "frames_sent": 0, "bad_frames": 0, "reconnects": 0}

    # -- what the link is doing -------------------------------------------------------------

    @property
    def active(self) -> bool:
        """A conversation holds the link (open, connecting or reconnecting)."""
        return self.ledger is not None

    @property
    def ready(self) -> bool:
        """A session is open and configured: frames and events go out now."""
        return self.conn is not None and self.ledger is not None and self.ledger.ready_at is not None

    @property
    def active_response(self) -> str | None:
        return self.ledger.active_response if self.ledger is not None else None

    def next_deadline(self) -> float | None:
        """When tick() next has something to do (None: nothing is timed)."""
        times = [t for t in (self._deadline, self._reconnect_at) if t is not None]
        return min(times) if times else None

    @staticmethod
    def _frames(seconds: float) -> int:
        return max(1, int(seconds * 1000) // FRAME_MS)

    @property
    def _buffer_s(self) -> float:
        return self.config.settings.reconnect.buffer_s

    # -- a conversation's connection ------------------------------------------------------------

    def open(self, manual: bool, held: list[np.ndarray] = ()) -> None:
        """Start a conversation's session; `held` is audio captured for it already."""
        self.ledger = SessionLedger(opened_at=self._clock())
        self.generation += 1
        self.history.clear()
        self.owed.clear()
        self.owed.frames.extend(held)
        self.manual = manual
        self._unheard.clear()
        self._held = len(self.owed.frames)
        self._last_heard = None
        self._connect_now()

    def close(self, reason: str) -> str | None:
        """End the conversation's session for good; its summary (None when none was open)."""
        if self.conn is not None:
            self.conn.close(1000)
            self.conn = None
        summary = None
        if self.ledger is not None:
            summary = self.ledger.summary(self._clock())
            self.ledger = None
        self.history.clear()
        self.owed.clear()
        self._unheard.clear()
        self._reply_wanted = self._speech = False
        self._reconnect_at = self._deadline = None
        self._held = 0
        self.generation += 1
        return summary

    def _connect_now(self) -> None:
        s = self.config.settings
        self._encoder = FrameEncoder(s.session.input_audio_format, s.session.frame_ms)
        self.connection += 1
        self.counters["sessions"] += 1
        self._deadline = self._clock() + s.server.connect_timeout_s + 1.0
        self._reconnect_at = None
        self._broken = False
        conn = self._connect(s.server, self.key, lambda event: self._post("net", conn, event))
        self.conn = conn
        self.ledger.attempts += 1
        if hasattr(conn, "set_liveness"):
            conn.set_liveness(self._brisk)
        conn.open()

    # -- what the conversation sends ------------------------------------------------------------

    def send_frame(self, frame: np.ndarray) -> None:
        """One microphone frame: sent now as exact appends, or held until a session is ready.

        A turn held longer than reconnect.buffer_s (in audio captured while no session was
        ready) is given up: the listener hears why.
        """
        if self.ready and not self._broken and not self.owed.frames:
            self._send_frame(frame)
            return
        self.owed.frames.append(frame)
        self._held += 1
        if self._held * FRAME_MS > self._buffer_s * 1000:
            self._give_up_waiting()

    def _give_up_waiting(self) -> None:
        held_s = self._held * FRAME_MS / 1000
        heard = getattr(self.conn, "last_heard", None) or self._last_heard
        since = f"; it was last heard {self._clock() - heard:.1f} s ago" if heard is not None else ""
        self._listener.link_gave_up(ConnectionFailed(
            f"the server could not be reached for {held_s:.1f} s of held audio "
            f"(reconnect.buffer_s = {self._buffer_s:g}){since}"), auth=False)

    def _send_frame(self, frame: np.ndarray) -> None:
        for data in self._encoder.push(frame):
            if not self.conn.send(ev.append(data)):
                self._broken = True  # the reader reports the drop; this frame waits for the next session
                self.owed.frames.append(frame)
                return
        self._unheard.append((frame, getattr(self.conn, "sent_events", 0)))
        self.ledger.samples_up += len(frame)
        self.counters["frames_sent"] += 1

    def turn_heard(self) -> None:
        """The server committed the user's turn: what was sent before is its, never resent."""
        self._unheard.clear()

    def end_turn(self) -> None:
        """The device ends the user's turn: the last partial frame, commit, ask for the reply."""
        if not self.ready:
            return
        for data in self._encoder.flush():
            self.conn.send(ev.append(data))
        self.conn.send(ev.commit())
        self._unheard.clear()
        self.ask_reply()

    def ask_reply(self) -> None:
        """response.create, deferred while one is active (the server allows one at a time)."""
        self.owed.reply = True
        if not self.ready:
            return
        if self.ledger.active_response is None:
            self.conn.send(ev.response_create())
            self._reply_wanted = False
        else:
            self._reply_wanted = True

    def cancel_reply(self, item_id: str | None, audio_end_ms: int) -> str | None:
        """Barge-in: cut the item at what was heard and cancel the reply; the cancelled id."""
        cancelled = self.active_response
        self.owed.reply = False
        if not self.ready:
            return cancelled
        if item_id is not None:
            self.conn.send(ev.truncate(item_id, audio_end_ms))
        if cancelled is not None:
            self.conn.send(ev.response_cancel())
        return cancelled

    def deliver(self, outcomes: list[ToolOutcome]) -> None:
        """Tool results back to the model, and a reply about them; owed while reconnecting."""
        if not self.ready:
            self.owed.outputs += outcomes
            self.owed.reply = True
            return
        for o in outcomes:
            if o.connection != self.connection:  # the new session must see the call first
                self.conn.send(ev.function_call_item(o.call_id, o.name, o.arguments))
            self.conn.send(ev.function_call_output(o.call_id, o.output))
        self.ask_reply()

    def use_turns(self, manual: bool) -> None:
        """Switch the open session between server VAD and turns ended by the device."""
        if manual != self.manual:
            self.manual = manual
            if self.ready:
                self.conn.send(ev.turn_detection_update(self.config.settings.session, manual=manual))

    def clear_input(self) -> None:
        """Drop what the server holds of the user's next turn (it was not meant as one)."""
        self._unheard.clear()
        if self.ready:
            self.conn.send(ev.clear())

    # -- what the server sends ------------------------------------------------------------------

    def on_net(self, conn: RealtimeConnection, event) -> None:
        """An event from a connection's reader thread, handled on the conversation thread."""
        if conn is not self.conn:
            return  # a late event from a connection already left
        if isinstance(event, Closed):
            if event.failure is not None:
                self.lost(event.failure)
            return
        if isinstance(event, BadFrame):
            self.counters["bad_frames"] += 1
            self._ratelog(logging.WARNING, str(event.error).split(":")[0],
                          f"skipped a bad message from the server: {event.error}")
            return
        kind = event.type
        if kind == "session.created":
            if self.ledger.ready_at is None:
                self._configure()
            return
        if kind == "response.created":
            self.ledger.active_response = (event.get("response") or {}).get("id") or "?"
        elif kind == "response.done":
            self._response_done(event)
        elif kind == "input_audio_buffer.speech_started":
            self._speech = True
        elif kind in ("input_audio_buffer.speech_stopped", "input_audio_buffer.committed"):
            self._speech = False
            self.turn_heard()
        elif kind == "error" and self._consume_error(event):
            return
        self._listener.link_event(event)

    def _response_done(self, event) -> None:
        self.ledger.active_response = None
        self.ledger.add_usage(event.usage)
        # Spoken, cancelled or failed: not asked again. A call's reply is asked with its output
        # (asking while the tool runs would make the model call it twice).
        self.owed.reply = False
        if self._reply_wanted:
            self._reply_wanted = False
            self.ask_reply()

    def _consume_error(self, e) -> bool:
        """Errors the link handles itself; True when the conversation need not hear of it."""
        if e.code == "conversation_already_has_active_response":
            self._reply_wanted = True
            return True
        if is_auth_error(e.code) or is_expiry(e.code):
            hint = f"; {auth_hint(e.code)}" if is_auth_error(e.code) else ""
            self.lost(ConnectionFailed(f"server error {e.code}: {e.message}{hint}", error_code=e.code))
            return True
        return False

    def _configure(self) -> None:
        """session.created: configure, replay the history, then send what the drop left owed."""
        s = self.config.settings
        tools = self.tools.declarations() if self.tools is not None else None
        self.conn.send(ev.session_update(s.session, tools, manual_turns=self.manual))
        resumed = self.ledger.attempts > 1  # this conversation lost a connection (or a try) before
        if resumed:
            for role, text in self.history.turns:
                self.conn.send(ev.text_message(role, text))
        self.ledger.ready_at = self._clock()
        self._deadline = None
        self._held = 0
        self._unheard.clear()
        self._speech = False
        log.info("session open with %s%s", self.conn.host,
                 f" (resumed, {len(self.history.turns)} turns replayed)" if resumed else "")
        frames = list(self.owed.frames)
        self.owed.frames.clear()
        for frame in frames:
            if self._broken:
                self.owed.frames.append(frame)
            else:
                self._send_frame(frame)
        redelivered = None
        if self.owed.outputs:
            outcomes, self.owed.outputs = self.owed.outputs, []
            self.deliver(outcomes)
            redelivered = "outputs"
        elif self.owed.reply and resumed:
            self.ask_reply()
            redelivered = "reply"
        self._listener.link_ready(resumed, redelivered)

    # -- faults and time --------------------------------------------------------------------------

    def lost(self, failure: ConnectionFailed) -> None:
        """The connection failed: give up (a refused key) or keep what is owed and retry."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        if self.ledger is None:
            return
        now = self._clock()
        if self.ledger.ready_at is not None:
            if self._uptime.was_stable(self.ledger.ready_at, now):
                self.backoff.reset()  # only a session that stayed up counts as a success
            self.ledger.disconnected(now)
        self._last_heard = getattr(conn, "last_heard", None) or self._last_heard
        if classify(failure) is Verdict.AUTH:
            self._listener.link_gave_up(failure, auth=True)
            return
        self.owed.frames.extendleft(reversed(self._unheard_to_resend(conn)))
        self._unheard.clear()
        self._speech = False  # the next session's VAD starts afresh
        self._reply_wanted = False
        self.ledger.active_response = None  # it died with its session (owed.reply asks again)
        self.ledger.pending_calls.clear()
        # A turn waits and nothing listens at the server's address: poll for its return briskly
        # (buffer_s bounds how long). Anything else gets the full backoff.
        brisk = bool(self.owed.frames) and is_refused(failure)
        delay = self.backoff.next_delay(ceiling=WAITING_RETRY_S if brisk else None)
        self.counters["reconnects"] += 1
        self._reconnect_at = now + delay
        self._deadline = None
        self._listener.link_reconnecting(failure, delay)

    def _unheard_to_resend(self, conn) -> list[np.ndarray]:
        """What the next session must hear again of what the lost one was sent (all of it not
        yet committed; quiet audio between utterances is not sent twice where it can be helped):
        - an utterance the server heard begin (or a push-to-talk turn): whole;
        - from a little before the first frame loud enough to be speech: the news of that speech
          may have died with the socket;
        - every frame sent after the server last confirmed what it had read (a pong): a frame in
          flight at a reset is lost on the way, and the device cannot tell which one arrived.
        """
        frames = [f for f, _ in self._unheard]
        if self._speech or self.manual:
            return frames
        starts = [len(frames)]
        loud = next((i for i, f in enumerate(frames) if _level_db(f) > SPEECH_FLOOR_DB), None)
        if loud is not None:
            padding = self._frames(self.config.settings.session.turn_detection.prefix_padding_ms / 1000)
            starts.append(max(0, loud - padding))
        confirmed = getattr(conn, "confirmed_events", None)
        if confirmed is not None:
            starts.append(next((i for i, (_, n) in enumerate(self._unheard) if n > confirmed),
                               len(frames)))
        return frames[min(starts):]

    def tick(self, now: float) -> None:
        """Timed work: a connect that takes too long, the next attempt, held audio too old."""
        if self._deadline is not None and now > self._deadline and self.conn is not None:
            self.lost(ConnectionFailed(
                f"{self.conn.host} did not open a session within "
                f"{self.config.settings.server.connect_timeout_s:g} s"))
        elif self._reconnect_at is not None and self.conn is None and now >= self._reconnect_at:
            self._connect_now()

    def set_liveness(self, brisk: bool) -> None:
        """Brisk pings while a turn is in progress (a dead socket found within the audio kept)."""
        self._brisk = brisk
        if self.conn is not None and hasattr(self.conn, "set_liveness"):
            self.conn.set_liveness(brisk)

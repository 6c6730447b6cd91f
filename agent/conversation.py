"""The conversation: one thread owns the state; microphone, socket, buttons and tools post to it.

Everything that happens elsewhere (a frame captured, an event received, a button pressed, a tool
finished) arrives on one queue, so the state changes in one place, in order, without locks.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from agent.audio.base import FRAME_MS, SAMPLE_RATE, Microphone, Speaker
from agent.audio.codec import StreamDecoder, StreamEncoder
from agent.config import Config
from agent.errors import ConnectionFailed
from agent.ratelog import RateLimitedLog
from agent.realtime import events as ev
from agent.realtime.client import BadFrame, Closed, RealtimeConnection
from agent.realtime.retry import (Backoff, UptimeJudge, Verdict, auth_hint, classify, is_auth_error,
                                  is_expiry, is_refused)
from agent.session import History, SessionLedger
from agent.state import State

log = logging.getLogger(__name__)

TICK_S = 0.02
THINKING_TIMEOUT_S = 20.0
WAITING_RETRY_S = 1.0  # longest wait between attempts while a turn is buffered and the server is down
INPUT_END_GRACE_S = 2.0  # after the input's end, time for the server to hear the last words
# Mid-conversation states: a dropped socket here is reconnected, not forgotten.
_IN_SESSION = {State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING,
               State.FOLLOW_UP, State.RECONNECTING}


def _newest(frames, samples: int) -> list[np.ndarray]:
    """The last `samples` samples of a sequence of frames, as frames (the first one partial)."""
    out: list[np.ndarray] = []
    for frame in reversed(frames):
        if samples <= 0:
            break
        out.append(frame[-samples:] if samples < len(frame) else frame)
        samples -= len(frame)
    return out[::-1]


@dataclass(frozen=True)
class Reopen:
    """A reloaded part that needs what the running one holds (its GPIO pins): close that first."""

    open: Callable[[], Any]


@dataclass(frozen=True)
class ToolOutcome:
    """A finished tool call, ready to go back to the model."""

    call_id: str
    name: str
    output: str
    ok: bool
    arguments: str = ""


class Conversation:
    """The state machine of the speaker, run on its own thread by `run()`."""

    def __init__(self, config: Config, *, api_key: str, mic: Microphone, speaker: Speaker,
                 detector=None, lights=None, toolbox=None, timers=None, earcons: dict | None = None,
                 echo=None, voice=None,
                 watchdog=None, on_state: Callable[[State, str], None] | None = None,
                 on_event: Callable[[str, dict], None] | None = None,
                 trigger_on_start: bool = False,
                 connect: Callable[..., RealtimeConnection] = RealtimeConnection,
                 clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None):
        self.config = config
        s = config.settings
        self._key = api_key
        self.mic = mic
        self.speaker = speaker
        self.detector = detector
        self.echo = echo      # EchoCanceller: every microphone frame goes through it first
        self.voice = voice    # VoiceActivity on the canceller's residual: voice barge-in
        self.lights = lights
        self.toolbox = toolbox
        self.timers = timers
        self.buttons = None  # only held here so a reload can replace them
        self.earcons = earcons or {}
        self._watchdog = watchdog
        self._on_state = on_state
        self._on_event = on_event  # named events for hooks: see _tell
        self._connect = connect
        self._clock = clock
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._ratelog = RateLimitedLog(log)
        self.backoff = backoff or Backoff(s.reconnect.base_s, s.reconnect.cap_s)
        self._uptime = UptimeJudge(s.reconnect.stable_s)

        self.state = State.IDLE
        self._trigger_on_start = trigger_on_start
        frames = max(1, s.audio.preroll_ms // FRAME_MS)
        self._ring: deque[np.ndarray] = deque(maxlen=frames)   # recent microphone audio
        self._pending: deque[np.ndarray] = deque()              # captured, not yet sent
        self.conn: RealtimeConnection | None = None
        self.ledger: SessionLedger | None = None
        self.history = History()
        self._manual_turn = False        # push-to-talk (hold) turn: the device ends it
        self._release_pending = False    # button released before the session was ready
        self._answer_owed = False        # a drop cut the reply: ask again after reconnecting
        self._resume_follow_up = False   # the drop came while waiting for a follow-up
        # Frames sent since the last turn boundary: a drop mid-utterance resends them, since the
        # old session never committed them.
        self._unheard: deque[np.ndarray] = deque(
            maxlen=max(1, int(s.reconnect.buffer_s * 1000 // FRAME_MS)))
        self._ignored_response: str | None = None  # interrupted: its late deltas are dropped
        self._reconnect_at: float | None = None
        self._connect_deadline: float | None = None
        self._follow_up_until = 0.0
        self._thinking_until = 0.0
        self._auth_retry_at = 0.0
        self._mic_ended = False
        self._mic_ended_at = 0.0
        self._stopping = False
        self._tools_running = 0
        self._conversation_no = 0        # +1 when a session ends for good (not on a reconnect)
        self._owed_outcomes: list[ToolOutcome] = []  # tools that finished while reconnecting
        self._response_wanted = False
        self._user_partial: dict[str, str] = {}
        self._assistant_text: dict[str, str] = {}
        self._call_names: dict[str, str] = {}
        self._end_after_reply = False
        self._ringing = False
        self._user_speaking = False      # server VAD heard speech start, not yet its end
        self._wake_live = False          # the detector heard the previous frame
        self._voice_live = False         # the voice detector heard the previous frame
        self._session_manual = False     # the open session has server VAD off
        self._device_fault: str | None = None  # an audio device is gone (being reopened)
        self.last_detection = None
        self.exit_code = 0
        self.counters = {"sessions": 0, "barge_ins": 0, "frames_sent": 0, "bad_frames": 0,
                         "reconnects": 0, "dropped_turns": 0}

    # -- what other threads call (they only post) -------------------------------------------

    def post(self, *message: Any) -> None:
        self._q.put(message)

    def on_frame(self, frame: np.ndarray) -> None:
        self._q.put(("frame", frame))

    def on_mic_end(self) -> None:
        self._q.put(("mic_end",))

    def on_button(self, event: Any) -> None:
        """A ButtonEvent from agent.gpio (or its action's name, e.g. "pressed")."""
        action = getattr(event, "action", event)
        if getattr(event, "long", False):
            return  # the release that ends a long press: the long press already acted
        self._q.put(("button", str(getattr(action, "value", action))))

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run fn on the conversation thread, between two messages (e.g. a volume knob turned)."""
        self._q.put(("call", fn))

    def trigger(self, source: str) -> None:
        self._q.put(("trigger", source))

    def stop(self) -> None:
        self._q.put(("stop",))

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Process messages until stop(); returns the exit code."""
        self._show(State.IDLE, "started")
        self.mic.start(self.on_frame, self.on_mic_end)
        if self._trigger_on_start:
            self.trigger("start of input")
        handlers = {"frame": self._on_frame, "net": self._on_net, "button": self._on_button,
                    "trigger": self._on_trigger, "mic_end": self._on_mic_end,
                    "tools_done": self._on_tools_done, "stop": self._on_stop,
                    "reload": self._on_reload, "mute": self._on_mute,
                    "end_after_reply": self._on_end_after_reply,
                    "timer_ring": self._on_timer_ring, "timer_quiet": self._on_timer_quiet,
                    "device": self._on_device, "call": lambda fn: fn()}
        try:
            while not self._stopping:
                try:
                    message = self._q.get(timeout=TICK_S)
                except queue.Empty:
                    message = None
                if message is not None:
                    handlers[message[0]](*message[1:])
                self._tick(self._clock())
        finally:
            self._shutdown()
        return self.exit_code

    def _shutdown(self) -> None:
        self.mic.stop()
        if self.conn is not None:
            self._end_session("daemon stopping", earcon=None)
        self.speaker.flush()

    # -- state -------------------------------------------------------------------------------

    def _show(self, state: State, reason: str) -> None:
        if state is self.state and reason != "started":
            return
        previous, self.state = self.state, state
        if reason == "started":
            log.info("started, %s", state.value, extra={"STATE": state.value})
        else:
            log.info("state %s -> %s (%s)", previous.value, state.value, reason,
                     extra={"STATE": state.value})
        if self.lights is not None:
            self.lights.show(state)
        if self._on_state is not None:
            self._on_state(state, reason)
        if state is State.ERROR:
            self._tell("error", message=reason)

    def _tell(self, event: str, /, **details: Any) -> None:
        """A named event for observers (hooks): wake_word {model, score}, session_opened {host},
        session_closed {reason, summary}, tool_called {name, ok}, error {message}."""
        if self._on_event is not None:
            self._on_event(event, details)

    def _earcon(self, name: str | None) -> None:
        sound = self.earcons.get(name) if name else None
        if sound is not None:
            self.speaker.play(sound, None)

    # -- microphone --------------------------------------------------------------------------

    def _on_frame(self, frame: np.ndarray) -> None:
        if self.echo is not None:  # wake word, pre-roll and what is sent hear the cleaned mic
            frame = self.echo.process(frame)  # (while muted too: it keeps its alignment)
        st = self.state
        if st is State.MUTED:
            return
        self._ring.append(frame)
        if st in (State.LISTENING, State.FOLLOW_UP):
            self._send_audio(frame)
        elif st in (State.CONNECTING, State.RECONNECTING):
            self._pending.append(frame)
            if len(self._pending) * FRAME_MS > self.config.settings.reconnect.buffer_s * 1000:
                self._drop_turn("the server could not be reached for "
                                f"{self.config.settings.reconnect.buffer_s:g} s")
        if st in (State.IDLE, State.ERROR, State.SPEAKING) and self.detector is not None:
            self._listen_for_wake_word(frame)
        else:
            self._wake_live = False
        if self.voice is not None:
            self._listen_for_voice()

    def _listen_for_wake_word(self, frame: np.ndarray) -> None:
        if not self._wake_live:  # the stream had a gap: old context would blur the next words
            self.detector.reset()
            self._wake_live = True
        hit = self.detector.process(frame)
        if hit is None:
            return
        log.info("wake word %s heard (score %.2f)", hit.model, hit.score)
        self._tell("wake_word", model=hit.model, score=round(float(hit.score), 3))
        self.last_detection = hit
        wake = self.config.settings.wake
        if wake.send_wake_word:
            self._on_trigger("wake word", list(self._ring))
        else:  # what was said after the wake word, from a little before the detection point
            back = wake.lookback_ms * SAMPLE_RATE // 1000
            self._on_trigger("wake word", _newest(self._ring, hit.lag_samples + back))

    def _listen_for_voice(self) -> None:
        """While a reply plays, the user's voice interrupts it: heard in the canceller's
        residual (the user at full level), above the level its echo may reach."""
        if self.state is not State.SPEAKING or not self.config.settings.echo.barge_in:
            self._voice_live = False
            return
        if not self._voice_live:  # a new reply: the room's noise floor is measured afresh
            self.voice.reset()
            self._voice_live = True
        lag = self.voice.process(self.echo.residual, self.echo.gate_db)
        if lag is not None:
            log.info("voice heard over the reply (%.0f dBFS)", self.voice.level_db)
            self._on_trigger("voice", _newest(self._ring, lag))

    def _send_audio(self, frame: np.ndarray) -> None:
        # While a reply is streaming, Mira treats any append as the user interrupting.
        data = self._encoder.encode(frame)  # G.711's resampler may hold the first frames back
        if self.conn is None or (data and not self.conn.send(ev.append(data))):
            return
        self._unheard.append(frame)
        self.ledger.samples_up += len(frame)
        self.counters["frames_sent"] += 1

    def _on_mic_end(self) -> None:
        self._mic_ended = True
        self._mic_ended_at = self._clock()
        log.info("microphone input ended")
        if self.state is State.LISTENING and (self._user_speaking or self._manual_turn):
            self._end_turn("input ended")

    # -- triggers ----------------------------------------------------------------------------

    def _on_trigger(self, source: str, after: list[np.ndarray] | None = None) -> None:
        """Start (or interrupt) a turn; `after` is audio already captured that belongs to it."""
        if self._ringing and self.timers is not None:
            self.timers.stop_ringing()  # the press or the wake word answers the timer
            return
        st = self.state
        if after is None:
            after = [] if source == "start of input" else list(self._ring)
        if st is State.SPEAKING or (st is State.THINKING and self.ledger and self.ledger.active_response):
            self._pending = deque(after)
            self._barge_in(source)
        elif st in (State.IDLE, State.ERROR):
            now = self._clock()
            if self._device_fault is not None:
                log.warning("%s ignored: %s", source, self._device_fault)
                return
            if st is State.ERROR and now < self._auth_retry_at:
                log.warning("%s ignored: the server refused the API key; next attempt in %.0f s "
                            "(fix the key and send SIGHUP to retry now)", source,
                            self._auth_retry_at - now)
                self._earcon("error")
                return
            self._pending = deque(after)
            self._ring.clear()
            self._earcon("wake")
            self._open(f"{source}")
        elif st is State.FOLLOW_UP:
            if self._manual_turn:  # push-to-talk: this turn is the button's, not the server VAD's
                if not self._session_manual:
                    self.conn.send(ev.turn_detection_update(self.config.settings.session, manual=True))
                    self._session_manual = True
                self.conn.send(ev.clear())  # what was streamed while waiting is not this turn
                for frame in after:
                    self._send_audio(frame)
            self._show(State.LISTENING, source)

    def _on_button(self, what: str) -> None:
        mode = self.config.settings.button.mode
        if what == "long_press":
            self._set_muted(self.state is not State.MUTED, "long press")
        elif what in ("mute_on", "mute_off"):
            self._set_muted(what == "mute_on", "mute switch")
        elif self.state is State.MUTED:
            return
        elif what == "pressed":
            self._manual_turn = mode == "hold"
            self._release_pending = False
            self._on_trigger("button")
        elif what == "released" and self._manual_turn:
            if self.state is State.LISTENING:
                self._end_turn("button released")
            elif self.state in (State.CONNECTING, State.RECONNECTING):
                self._release_pending = True

    def _set_muted(self, muted: bool, reason: str) -> None:
        if muted and self.state is not State.MUTED:
            if self.conn is not None or self.ledger is not None:
                self.speaker.flush()
                self._end_session(f"muted by {reason}", earcon=None, then=State.MUTED)
            self._ring.clear()
            self._show(State.MUTED, reason)
        elif not muted and self.state is State.MUTED:
            self._show(State.IDLE, reason)

    def _end_turn(self, reason: str) -> None:
        """The device ends the user's turn (push-to-talk, or input over): commit and ask."""
        if self.conn is None:
            return
        self.conn.send(ev.commit())
        self._unheard.clear()
        self._request_response()
        self._manual_turn = False
        self._thinking_until = self._clock() + THINKING_TIMEOUT_S
        self._show(State.THINKING, reason)

    # -- barge-in ----------------------------------------------------------------------------

    def _barge_in(self, source: str) -> None:
        played = self.speaker.flush()
        led = self.ledger
        item = led.speaking_item
        if item is not None:
            self.conn.send(ev.truncate(item, led.truncate_ms(item, played.get(item, 0))))
        if led.active_response is not None:
            self.conn.send(ev.response_cancel())
            self._ignored_response = led.active_response
        self.counters["barge_ins"] += 1
        led.speaking_item = None
        self._decoder.reset()
        self._show(State.LISTENING, f"barge-in by {source}")
        for frame in self._pending:
            self._send_audio(frame)
        self._pending.clear()

    # -- the session -------------------------------------------------------------------------

    def _open(self, reason: str) -> None:
        now = self._clock()
        self.ledger = SessionLedger(opened_at=now)
        self._encoder = StreamEncoder(self.config.settings.session.input_audio_format)
        self._decoder = StreamDecoder(self.config.settings.session.output_audio_format)
        self.counters["sessions"] += 1
        self._connect_deadline = now + self.config.settings.server.connect_timeout_s + 1.0
        self._reconnect_at = None
        conn = self._connect(self.config.settings.server, self._key,
                             lambda event: self._q.put(("net", conn, event)))
        self.conn = conn
        if self.state is not State.RECONNECTING:
            self._show(State.CONNECTING, reason)
        conn.open()

    def _end_session(self, reason: str, earcon: str | None = "end", then: State = State.IDLE) -> None:
        if self.conn is not None:
            self.conn.close(1000)
            self.conn = None
        if self.ledger is not None:
            summary = self.ledger.summary(self._clock())
            log.info("session closed (%s): %s", reason, summary)
            self._tell("session_closed", reason=reason, summary=summary)
            self.ledger = None
        self._pending.clear()
        self.history.clear()
        self._manual_turn = self._release_pending = self._answer_owed = False
        self._resume_follow_up = False
        self._unheard.clear()
        self._end_after_reply = False
        self._owed_outcomes = []
        self._conversation_no += 1
        self._reconnect_at = self._connect_deadline = None
        self._earcon(earcon)
        if self.state is not State.MUTED:
            self._show(then, reason)

    def _drop_turn(self, reason: str) -> None:
        log.error("turn dropped: %s", reason)
        self.counters["dropped_turns"] += 1
        self.speaker.flush()
        self._end_session(reason, earcon="error")

    def _session_ready(self) -> None:
        s = self.config.settings
        tools = self.toolbox.declarations() if self.toolbox is not None else None
        manual = True if self._manual_turn else None
        self.conn.send(ev.session_update(s.session, tools, manual_turns=manual))
        self._session_manual = self._manual_turn or s.session.turn_detection.mode == "manual"
        resumed = self.state is State.RECONNECTING
        if resumed:
            for role, text in self.history.turns:
                self.conn.send(ev.text_message(role, text))
        self.ledger.ready_at = self._clock()
        self._connect_deadline = None
        log.info("session open with %s%s", self.conn.host,
                 f" (resumed, {len(self.history.turns)} turns replayed)" if resumed else "")
        if not resumed:
            self._tell("session_opened", host=self.conn.host)
        self._unheard.clear()
        self._user_speaking = False  # the new session's VAD starts afresh
        if resumed and self._resume_follow_up and not self._answer_owed:
            # Still the follow-up window: it ends the session unless the user speaks (the grace
            # lets the server hear the audio kept while reconnecting).
            self._follow_up_until = max(self._follow_up_until, self._clock() + INPUT_END_GRACE_S)
            self._show(State.FOLLOW_UP, "session resumed")
        else:
            self._show(State.LISTENING, "session resumed" if resumed else "session ready")
        self._resume_follow_up = False
        for frame in self._pending:
            self._send_audio(frame)
        self._pending.clear()
        if self._owed_outcomes:
            outcomes, self._owed_outcomes = self._owed_outcomes, []
            self._answer_owed = False
            self._send_outcomes(outcomes, replay=True)
            self._show(State.THINKING, "returning what a tool did during the drop")
        elif self._answer_owed:
            self._answer_owed = False
            self._request_response()
            self._thinking_until = self._clock() + THINKING_TIMEOUT_S
            self._show(State.THINKING, "asking again for the reply cut by the drop")
        elif self._tools_running:
            self._thinking_until = self._clock() + THINKING_TIMEOUT_S + 60
            self._show(State.THINKING, "a tool is still running")
        elif self._release_pending or (self._mic_ended and self._manual_turn):
            self._release_pending = False
            self._end_turn("button released" if not self._mic_ended else "input ended")

    def _request_response(self) -> None:
        """response.create, deferred while one is active (the server allows one at a time)."""
        if self.ledger.active_response is None:
            self.conn.send(ev.response_create())
            self._response_wanted = False
        else:
            self._response_wanted = True

    # -- network events ----------------------------------------------------------------------

    def _on_net(self, conn: RealtimeConnection, event) -> None:
        if conn is not self.conn:
            return  # a late event from a connection we already left
        if isinstance(event, Closed):
            if event.failure is not None:
                self._connection_lost(event.failure)
            return
        if isinstance(event, BadFrame):
            self.counters["bad_frames"] += 1
            self._ratelog(logging.WARNING, str(event.error).split(":")[0],
                          f"skipped a bad message from the server: {event.error}")
            return
        handler = self._EVENT_HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        else:
            log.debug("ignored server event %s", event.type)

    def _ev_session_created(self, e) -> None:
        if self.ledger.ready_at is None:
            self._session_ready()

    def _ev_speech_started(self, e) -> None:
        self._user_speaking = True
        if self.state is State.FOLLOW_UP:
            self._show(State.LISTENING, "user spoke again")

    def _ev_speech_stopped(self, e) -> None:
        self._user_speaking = False
        self._unheard.clear()
        if self.state is State.LISTENING:
            self._thinking_until = self._clock() + THINKING_TIMEOUT_S
            self._show(State.THINKING, "end of speech")

    def _ev_user_delta(self, e: ev.TextDelta) -> None:
        text = self._user_partial.get(e.item_id, "") + e.text
        self._user_partial[e.item_id] = text
        log.info("user (partial): %s", text)

    def _ev_user_done(self, e: ev.TextDelta) -> None:
        self._user_partial.pop(e.item_id, None)
        log.info("user: %s", e.text)
        self.history.add("user", e.text)

    def _ev_assistant_delta(self, e: ev.TextDelta) -> None:
        if e.get("response_id") == self._ignored_response:
            return
        text = self._assistant_text.get(e.item_id, "") + e.text
        self._assistant_text[e.item_id] = text
        log.debug("assistant (partial): %s", text)

    def _ev_assistant_done(self, e: ev.TextDelta) -> None:
        self._assistant_text.pop(e.item_id, None)
        if e.get("response_id") == self._ignored_response:
            return
        log.info("assistant: %s", e.text)
        self.history.add("assistant", e.text)

    def _ev_response_created(self, e) -> None:
        response = e.get("response") or {}
        self.ledger.active_response = response.get("id") or "?"
        if self.state in (State.LISTENING, State.FOLLOW_UP):
            self._thinking_until = self._clock() + THINKING_TIMEOUT_S
            self._show(State.THINKING, "reply started")

    def _ev_audio_delta(self, e: ev.AudioDelta) -> None:
        if e.response_id and e.response_id == self._ignored_response:
            return
        if self.state not in (State.THINKING, State.SPEAKING):
            return  # the user already took the turn back
        pcm = self._decoder.decode(e.audio)
        self.ledger.audio_received(e.item_id, len(pcm))
        self.speaker.play(pcm, e.item_id)
        if self.state is not State.SPEAKING:
            self._pending.clear()
            self._show(State.SPEAKING, "first reply audio")

    def _ev_audio_done(self, e) -> None:
        # The resampler of G.711 audio holds its last few ms back until told the item ended.
        tail = self._decoder.flush()
        if len(tail) and self.state is State.SPEAKING and e.get("response_id") != self._ignored_response:
            item = str(e.get("item_id") or "")
            self.ledger.audio_received(item, len(tail))
            self.speaker.play(tail, item)

    def _ev_item_added(self, e) -> None:
        item = e.get("item") or {}
        if item.get("type") == "function_call":
            self._call_names[str(item.get("call_id"))] = str(item.get("name") or "")

    def _ev_function_call(self, e: ev.FunctionCall) -> None:
        name = e.name or self._call_names.get(e.call_id, "")
        self.ledger.pending_calls.append((e.call_id, name, e.arguments))

    def _ev_response_done(self, e: ev.ResponseDone) -> None:
        led = self.ledger
        led.active_response = None
        led.add_usage(e.usage)
        if e.status not in ("completed", "cancelled"):
            self._ratelog(logging.WARNING, f"status:{e.status}",
                          f"reply ended with status {e.status}: "
                          f"{(e.get('response') or {}).get('status_details')}")
        if led.pending_calls:
            calls, led.pending_calls = led.pending_calls, []
            self._run_tools(calls)
        elif self._response_wanted:
            self._request_response()

    def _ev_error(self, e: ev.ServerError) -> None:
        if e.code == "conversation_already_has_active_response":
            self._response_wanted = True
            return
        if is_auth_error(e.code) or is_expiry(e.code):
            hint = f"; {auth_hint(e.code)}" if is_auth_error(e.code) else ""
            self._connection_lost(ConnectionFailed(f"server error {e.code}: {e.message}{hint}",
                                                   error_code=e.code))
            return
        self._ratelog(logging.WARNING, f"error:{e.code}",
                      f"server reported an error: {e.code or e.error_type}: {e.message}")

    _EVENT_HANDLERS = {
        "session.created": _ev_session_created,
        "input_audio_buffer.speech_started": _ev_speech_started,
        "input_audio_buffer.speech_stopped": _ev_speech_stopped,
        "conversation.item.input_audio_transcription.delta": _ev_user_delta,
        "conversation.item.input_audio_transcription.completed": _ev_user_done,
        "response.audio_transcript.delta": _ev_assistant_delta,
        "response.audio_transcript.done": _ev_assistant_done,
        "response.created": _ev_response_created,
        "response.audio.delta": _ev_audio_delta,
        "response.audio.done": _ev_audio_done,
        "response.output_item.added": _ev_item_added,
        "response.function_call_arguments.done": _ev_function_call,
        "response.done": _ev_response_done,
        "error": _ev_error,
    }

    # -- tools -------------------------------------------------------------------------------

    def _run_tools(self, calls: list[tuple[str, str, str]]) -> None:
        self._show(State.THINKING, f"running tool {', '.join(n for _, n, _ in calls)}")
        self._thinking_until = self._clock() + THINKING_TIMEOUT_S + 60
        self._tools_running += 1
        conn, number = self.conn, self._conversation_no

        def work() -> None:
            outcomes = []
            for call_id, name, arguments in calls:  # in order, each with its own output
                if self.toolbox is None:
                    outcomes.append(ToolOutcome(call_id, name, '{"error": "no tools on this device"}', False))
                    continue
                result = self.toolbox.run(name, arguments)
                outcomes.append(ToolOutcome(call_id, name, result.output, result.ok, arguments or ""))
            self._q.put(("tools_done", conn, number, outcomes))

        threading.Thread(target=work, name="tool-call", daemon=True).start()

    def _on_tools_done(self, conn: RealtimeConnection | None, number: int,
                       outcomes: list[ToolOutcome]) -> None:
        self._tools_running -= 1
        for o in outcomes:
            self._tell("tool_called", name=o.name, ok=o.ok)
        if number != self._conversation_no:
            return  # the session ended while the tool ran
        if self.conn is None or self.ledger is None or self.ledger.ready_at is None:
            self._owed_outcomes += outcomes  # reconnecting: sent when the new session is ready
            return
        self._send_outcomes(outcomes, replay=conn is not self.conn)

    def _send_outcomes(self, outcomes: list[ToolOutcome], replay: bool) -> None:
        for o in outcomes:
            if replay:  # a reconnect since the call: the new session must see the call first
                self.conn.send(ev.function_call_item(o.call_id, o.name, o.arguments))
            self.conn.send(ev.function_call_output(o.call_id, o.output))
        self._request_response()
        self._thinking_until = self._clock() + THINKING_TIMEOUT_S

    # -- connection faults -------------------------------------------------------------------

    def _connection_lost(self, failure: ConnectionFailed) -> None:
        if self.conn is not None:
            self.conn.abort()
            self.conn = None
        now = self._clock()
        if classify(failure) is Verdict.AUTH:
            retry = self.config.settings.reconnect.auth_retry_s
            log.error("%s. Not retrying for %.0f s (or until SIGHUP).", failure, retry)
            self._auth_retry_at = now + retry
            self.speaker.flush()
            self._end_session("the server refused the key", earcon="error", then=State.ERROR)
            return
        if self.state not in _IN_SESSION:
            return
        # A running tool answers when it finishes; asking again would make the model call it twice.
        if self.state in (State.THINKING, State.SPEAKING) and not self._tools_running \
                and self.history.turns and self.history.turns[-1][0] == "user":
            self._answer_owed = True
        if self.state is State.SPEAKING:
            self.speaker.flush()
        if self.ledger is not None and self.ledger.ready_at is not None \
                and self._uptime.was_stable(self.ledger.ready_at, now):
            self.backoff.reset()  # only a session that stayed up counts as a success
        # A turn waits in the buffer and nothing listens at the server's address: poll for its
        # return briskly (buffer_s bounds how long). Anything else gets the full backoff.
        brisk = bool(self._pending) and is_refused(failure)
        delay = self.backoff.next_delay(ceiling=WAITING_RETRY_S if brisk else None)
        self.counters["reconnects"] += 1
        log.warning("%s; reconnecting in %.1f s (microphone audio is kept meanwhile)", failure, delay)
        self._reconnect_at = now + delay
        self._connect_deadline = None
        if self.state is not State.RECONNECTING:
            self._resume_follow_up = self.state is State.FOLLOW_UP
            if self._user_speaking or self._manual_turn:  # cut before its commit: send it whole again
                self._pending.extendleft(reversed(self._unheard))
            self._unheard.clear()
        self._show(State.RECONNECTING, str(failure))

    # -- time --------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._watchdog is not None:
            self._watchdog.kick()
        st = self.state
        if self._connect_deadline is not None and now > self._connect_deadline and self.conn is not None:
            self._connection_lost(ConnectionFailed(
                f"{self.conn.host} did not open a session within "
                f"{self.config.settings.server.connect_timeout_s:g} s"))
        elif st is State.RECONNECTING and self.conn is None and self._reconnect_at is not None \
                and now >= self._reconnect_at:
            self._open("reconnecting")
        elif st is State.SPEAKING and self.ledger.active_response is None and self.speaker.drained() \
                and not self._tools_running:
            if self._end_after_reply:
                self._end_session("the user said goodbye")
            else:
                self._follow_up_until = now + self.config.settings.session.follow_up_s
                self._show(State.FOLLOW_UP, "reply finished")
        elif st is State.THINKING and now > self._thinking_until and not self._tools_running:
            log.warning("no reply from the server within %.0f s", THINKING_TIMEOUT_S)
            self._follow_up_until = now + self.config.settings.session.follow_up_s
            self._show(State.FOLLOW_UP, "no reply")
        elif st is State.LISTENING and self._mic_ended and not self._user_speaking \
                and now - self._mic_ended_at > INPUT_END_GRACE_S:
            self._end_session("input ended")
        elif st is State.FOLLOW_UP and (now > self._follow_up_until or self._mic_ended):
            self._end_session("input ended" if self._mic_ended else
                              f"no follow-up for {self.config.settings.session.follow_up_s:g} s")
        elif st is State.FOLLOW_UP and self.ledger is not None \
                and now - self.ledger.opened_at > self.config.settings.session.max_session_min * 60:
            self._end_session("the session reached its maximum length")
        if self._mic_ended and self.config.settings.daemon.exit_when_done and self.state in \
                (State.IDLE, State.ERROR, State.MUTED) and self.speaker.drained():
            self._stopping = True

    # -- control -----------------------------------------------------------------------------

    def _on_stop(self) -> None:
        self._stopping = True

    def _on_mute(self, muted: bool) -> None:
        self._set_muted(muted, "asked by voice")

    def _on_end_after_reply(self) -> None:
        if self.conn is not None:
            self._end_after_reply = True

    def _on_timer_ring(self, timer) -> None:
        self._ringing = True
        log.info("timer %s is ringing%s", timer.id, f" ({timer.label})" if timer.label else "")
        self._earcon("ring")
        if self.lights is not None and hasattr(self.lights, "ring"):
            self.lights.ring()

    def _on_timer_quiet(self) -> None:
        self._ringing = False
        if self.lights is not None:
            self.lights.show(self.state)

    def _on_device(self, ok: bool, message: str) -> None:
        """An audio device was lost (it is being reopened with backoff) or came back."""
        if not ok:
            self._device_fault = message
            log.error("%s", message)
            if self.conn is not None or self.ledger is not None:
                self.speaker.flush()
                self._end_session("audio device lost", earcon=None, then=State.ERROR)
            elif self.state is not State.MUTED:
                self._show(State.ERROR, message)
        else:
            log.info("%s", message)
            self._device_fault = None
            if self.state is State.ERROR and self._clock() >= self._auth_retry_at:
                self._show(State.IDLE, "audio device back")

    def _on_reload(self, config: Config, parts: dict[str, Any] | None = None,
                   api_key: str | None = None) -> None:
        """A reloaded config (SIGHUP), with the parts rebuilt for it and the key read again.

        Swapped in here, between two messages, so no part is replaced or closed while in use.
        A fixed key is worth trying at once: the refused-key wait is over.
        """
        self._swap_parts(parts or {})
        self.config = config
        if self.voice is not None:
            self.voice.configure(config.settings.echo)
        if api_key:
            self._key = api_key
        self._auth_retry_at = 0.0
        log.info("configuration reloaded")
        if self.state is State.ERROR and self._device_fault is None:
            self._show(State.IDLE, "configuration reloaded")

    def _swap_parts(self, parts: dict[str, Any]) -> None:
        for name, part in parts.items():
            old = getattr(self, name)
            if isinstance(part, Reopen):
                if old is not None:
                    old.close()
                part = part.open()
            setattr(self, name, part)
            if old is not None and old is not part and hasattr(old, "close"):
                old.close()
        if "detector" in parts:
            self._wake_live = False
        if "lights" in parts and self.lights is not None:
            self.lights.show(self.state)

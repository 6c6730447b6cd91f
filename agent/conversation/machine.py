"""The conversation: the speaker's state machine, on one thread, fed by one queue.

Microphone, socket, buttons, tools and timers run on their own threads and only post here, so
every state changes in one place, in order, without locks. The conversation uses two parts:
the frame router (where each microphone frame goes) and the session link (the connection to
Mira across drops). The states and transitions are those of shared/DESIGN.md:

    IDLE --wake/button--> CONNECTING --session ready--> LISTENING --end of speech--> THINKING
    THINKING --first audio--> SPEAKING --done and drained--> FOLLOW_UP --speech--> LISTENING
    FOLLOW_UP --quiet for N s--> IDLE        SPEAKING --barge-in--> LISTENING
    any session state --drop--> RECONNECTING --ready--> where it was ; MUTED, ERROR from anywhere
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np

from agent.audio.base import Microphone, Speaker
from agent.config import Config
from agent.conversation.control import Control
from agent.conversation.link import SessionLink
from agent.conversation.loop import Inbox
from agent.conversation.offline import WAITING, OfflineSide
from agent.conversation.reply import ReplyAudio, Words
from agent.conversation.server_side import INPUT_END_GRACE_S, THINKING_TIMEOUT_S, ServerSide
from agent.conversation.router import FrameRouter
from agent.conversation.tools import ToolRunner
from agent.conversation.turn import Turn
from agent.ratelog import RateLimitedLog
from agent.realtime.client import RealtimeConnection
from agent.realtime.retry import Backoff
from agent.state import State

log = logging.getLogger("agent.conversation")  # the name people filter the journal by

IDLE_WAIT_S = 0.25   # longest sleep of the loop with nothing timed (the watchdog is fed meanwhile)
DRAIN_POLL_S = 0.02  # while a reply plays, how often the loop looks whether it has drained


class Conversation(Inbox, ServerSide, OfflineSide, Control):
    """The state machine of the speaker, run on its own thread by `run()`."""

    def __init__(self, config: Config, *, api_key: str, mic: Microphone, speaker: Speaker,
                 detector=None, lights=None, toolbox=None, timers=None, earcons: dict | None = None,
                 echo=None, voice=None, assistant=None,
                 watchdog=None, on_state: Callable[[State, str], None] | None = None,
                 on_event: Callable[[str, dict], None] | None = None,
                 trigger_on_start: bool = False,
                 connect: Callable[..., RealtimeConnection] = RealtimeConnection,
                 clock: Callable[[], float] = time.monotonic, backoff: Backoff | None = None):
        s = config.settings
        self._config = config
        self.mic = mic
        self.speaker = speaker
        self.lights = lights
        self.timers = timers
        self.buttons = None  # only held here so a reload can replace them
        self.earcons = earcons or {}
        self._watchdog = watchdog
        self._on_state = on_state
        self._on_event = on_event  # named events for hooks: see _tell
        super().__init__()
        self._clock = clock
        self._ratelog = RateLimitedLog(log)
        self.link = SessionLink(config, api_key, self, self.post, clock=clock, connect=connect,
                                backoff=backoff)
        self.router = FrameRouter(self._send_frame, preroll_ms=s.audio.preroll_ms, echo=echo,
                                  detector=detector, voice=voice, wake=s.wake,
                                  barge_in=s.echo.barge_in)
        self.tools = ToolRunner(self.post)
        self.assistant = assistant  # an OfflineAssistant: answers while the service is unreachable
        self.toolbox = toolbox
        self.health = self._new_health(s.offline.check_interval_s)
        self._answering = False  # an offline answer is being made on a worker
        self.audio = ReplyAudio(speaker, s.session.output_audio_format)
        self.words = Words()

        self.state = State.IDLE
        self._shown_reason = ""
        self.turn: Turn | None = None
        self._trigger_on_start = trigger_on_start
        self._resume_to: State | None = None    # where a drop interrupted the conversation
        self._follow_up_until = 0.0
        self._thinking_until = 0.0
        self._auth_retry_at = 0.0
        self._mic_ended_at: float | None = None
        self._ringing = False
        self._device_fault: str | None = None   # an audio device is gone (being reopened)
        self.last_detection = None
        self.exit_code = 0
        self._counts = {"barge_ins": 0, "dropped_turns": 0, "frames_dropped": 0}

    # -- the parts, as the daemon and a reload see them ------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """A new config reaches the link, the router and the link's health too."""
        self._config = self.link.config = config
        self.health.interval_s = config.settings.offline.check_interval_s
        self.router.wake = config.settings.wake
        self.router.barge_in = config.settings.echo.barge_in

    detector = property(lambda self: self.router.detector,
                        lambda self, d: setattr(self.router, "detector", d))
    echo = property(lambda self: self.router.echo, lambda self, e: setattr(self.router, "echo", e))
    voice = property(lambda self: self.router.voice, lambda self, v: setattr(self.router, "voice", v))
    backoff = property(lambda self: self.link.backoff, lambda self, b: setattr(self.link, "backoff", b))
    ledger = property(lambda self: self.link.ledger)
    conn = property(lambda self: self.link.conn)
    history = property(lambda self: self.link.history)

    @property
    def toolbox(self):
        return self.tools.toolbox

    @toolbox.setter
    def toolbox(self, toolbox) -> None:
        self.tools.toolbox = self.link.tools = toolbox
        if self.assistant is not None:
            self.assistant.toolbox = toolbox

    @property
    def counters(self) -> dict[str, int]:
        return {**self.link.counters, **self._counts}

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Process messages until stop(); returns the exit code."""
        self._show(State.IDLE, "started")
        self.mic.start(self.on_frame, self.on_mic_end)
        if self._trigger_on_start:
            self.trigger("start of input")
        handlers = {"frame": self._on_frame, "net": self.link.on_net, "button": self._on_button,
                    "trigger": self._on_trigger, "mic_end": self._on_mic_end,
                    "tools_done": self._on_tools_done, "stop": self._on_stop,
                    "reload": self._on_reload, "mute": self._on_mute,
                    "end_after_reply": self._on_end_after_reply,
                    "timer_ring": self._on_timer_ring, "timer_quiet": self._on_timer_quiet,
                    "device": self._on_device, "call": lambda fn: fn(),
                    "offline_answer": self._on_offline_answer, "link_checked": self._on_link_checked}
        try:
            self.run_loop(handlers, lambda: self._wait_s(self._clock()), lambda: self._tick(self._clock()))
        finally:
            self._shutdown()
        # A failed turn is news for a script (--exit-when-done), not for systemd's stop.
        return self.exit_code if self.config.settings.daemon.exit_when_done else 0

    def _wait_s(self, now: float) -> float:
        """How long the loop may sleep: until the next timed thing (frames wake it anyway)."""
        if self.state is State.SPEAKING or self._mic_ended_at is not None:
            return DRAIN_POLL_S  # "drained" and "input over" are looked at, not announced
        due = {State.THINKING: self._thinking_until,
               State.FOLLOW_UP: self._follow_up_until}.get(self.state)
        times = [t for t in (due, self.link.next_deadline()) if t is not None]
        longest = IDLE_WAIT_S
        period = getattr(self._watchdog, "period", None)
        if period:  # the watchdog is fed from this loop: wake well within its period
            longest = min(longest, period / 2)
        return min(longest, max(0.0, min(times, default=now + longest) - now))

    def _shutdown(self) -> None:
        self.mic.stop()
        if self.link.active:
            self._end_session("daemon stopping", earcon=None)
        self.speaker.flush()

    # -- state -------------------------------------------------------------------------------

    def _show(self, state: State, reason: str) -> None:
        # The same state again is news only for an error whose sentence changed.
        if state is self.state and reason != "started" and (state is not State.ERROR
                                                            or reason == self._shown_reason):
            return
        self._shown_reason = reason
        previous, self.state = self.state, state
        if reason == "started":
            log.info("started, %s", state.value, extra={"STATE": state.value})
        else:
            log.info("state %s -> %s (%s)", previous.value, state.value, reason,
                     extra={"STATE": state.value})
        # A dead socket must be found while a turn can still be carried; between turns, slower.
        self.link.set_liveness(state is not State.FOLLOW_UP)
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

    def _begin_turn(self, source: str, *, manual: bool = False, ignored: str | None = None) -> Turn:
        self.turn = Turn(source, manual=manual, ignored_response=ignored)
        return self.turn

    def _think(self, reason: str, extra_s: float = 0.0) -> None:
        self._thinking_until = self._clock() + THINKING_TIMEOUT_S + extra_s
        self._show(State.THINKING, reason)

    def _follow_up(self, reason: str) -> None:
        self._follow_up_until = self._clock() + self.config.settings.session.follow_up_s
        self.turn = None
        self._show(State.FOLLOW_UP, reason)

    # -- microphone --------------------------------------------------------------------------

    def _on_frame(self, frame: np.ndarray) -> None:
        if self.frames_dropped != self._counts["frames_dropped"]:
            self._counts["frames_dropped"] = self.frames_dropped
            self._ratelog(logging.WARNING, "backlog", f"the microphone gives audio faster than it "
                          f"can be handled: {self.frames_dropped} frames dropped so far")
        heard = self.router.route(frame, self.state)
        if heard is None:
            return
        if heard.hit is not None:
            hit = heard.hit
            log.info("wake word %s heard (score %.2f)", hit.model, hit.score)
            self._tell("wake_word", model=hit.model, score=round(float(hit.score), 3))
            self.last_detection = hit
        else:
            log.info("voice heard over the reply (%.0f dBFS)", self.router.voice.level_db)
        self._on_trigger(heard.source, heard.after)

    def _on_mic_end(self) -> None:
        self._mic_ended_at = self._clock()
        log.info("microphone input ended")
        turn = self.turn
        if self.state is State.LISTENING and turn is not None and \
                (turn.speaking or turn.manual or turn.offline):
            self._end_turn("input ended")

    # -- triggers ----------------------------------------------------------------------------

    def _on_trigger(self, source: str, after: list[np.ndarray] | None = None,
                    manual: bool = False) -> None:
        """Start (or interrupt) a turn; `after` is audio already captured that belongs to it."""
        if self._ringing and self.timers is not None:
            self.timers.stop_ringing()  # the press or the wake word answers the timer
            return
        st = self.state
        if after is None:
            after = [] if source == "start of input" else self.router.preroll()
        if st is State.SPEAKING and self.turn is not None and self.turn.offline:
            self.speaker.flush()  # an answer made on the device: nothing to tell a server
            self._counts["barge_ins"] += 1
            self._start_session(source, after, manual)
        elif st is State.SPEAKING or (st is State.THINKING and self.link.active_response):
            self._barge_in(source, after, manual)
        elif st in WAITING or st is State.ERROR:
            self._start_session(source, after, manual)
        elif st is State.FOLLOW_UP:
            self._begin_turn(source, manual=manual)
            if manual:  # push-to-talk: this turn is the button's, not the server VAD's
                self.link.use_turns(manual=True)
                self.link.clear_input()  # what was streamed while waiting is not this turn
                for frame in after:
                    self.link.send_frame(frame)
            self._show(State.LISTENING, source)

    def _on_button(self, what: str) -> None:
        mode = self.config.settings.button.mode
        if what in ("long_press", "mute_toggle"):
            self._set_muted(self.state is not State.MUTED,
                            "long press" if what == "long_press" else "mute button")
        elif what in ("mute_on", "mute_off"):
            self._set_muted(what == "mute_on", "mute switch")
        elif self.state is State.MUTED:
            return
        elif what == "pressed":
            self._on_trigger("button", manual=mode == "hold")
        elif what == "released" and self.turn is not None and self.turn.manual:
            if self.state is State.LISTENING:
                self._end_turn("button released")
            elif self.state in (State.CONNECTING, State.RECONNECTING):
                self.turn.released = True

    def _set_muted(self, muted: bool, reason: str) -> None:
        if muted and self.state is not State.MUTED:
            if self.link.active:
                self.speaker.flush()
                self._end_session(f"muted by {reason}", earcon=None, then=State.MUTED)
            self.router.clear()
            self._show(State.MUTED, reason)
        elif not muted and self.state is State.MUTED:
            self._wait(reason)

    def _end_turn(self, reason: str) -> None:
        """The device ends the user's turn (push-to-talk, or input over): commit and ask."""
        if self.turn.offline:
            self._answer_offline(reason)
            return
        if not self.link.ready:
            return
        self.link.end_turn()
        self.turn.manual = False
        self._think(reason)

    def _barge_in(self, source: str, after: list[np.ndarray], manual: bool) -> None:
        """The user takes the turn back: silence now, cut the item at what was heard, cancel."""
        item, heard_ms = self.audio.cut(self.link.ledger)
        cancelled = self.link.cancel_reply(item, heard_ms)
        self._counts["barge_ins"] += 1
        self._begin_turn(source, manual=manual, ignored=cancelled)
        self._show(State.LISTENING, f"barge-in by {source}")
        for frame in after:
            self.link.send_frame(frame)

    # -- the session -------------------------------------------------------------------------

    def _start_session(self, source: str, after: list[np.ndarray], manual: bool) -> None:
        now = self._clock()
        if self._device_fault is not None:
            log.warning("%s ignored: %s", source, self._device_fault)
            return
        if self.state is State.ERROR and now < self._auth_retry_at:
            log.warning("%s ignored: the server refused the API key; next attempt in %.0f s "
                        "(fix the key and send SIGHUP to retry now)", source, self._auth_retry_at - now)
            self._earcon("error")
            return
        if self.health.down and self.assistant is not None:
            self._start_offline_turn(source, after, manual)
            return
        self.router.clear()
        self._earcon("wake")
        self._begin_turn(source, manual=manual)
        self._show(State.CONNECTING, source)
        self.link.open(manual=manual or self.config.settings.session.turn_detection.mode == "manual",
                       held=after)

    def _end_session(self, reason: str, earcon: str | None = "end", then: State | None = None) -> None:
        """Close the session; the speaker waits (IDLE, or OFFLINE) unless `then` says otherwise."""
        self._close_link(reason)
        self.turn = None
        self._resume_to = None
        self.words = Words()
        self._earcon(earcon)
        if self.state is not State.MUTED:
            self._show(then, reason) if then is not None else self._wait(reason)

    def _close_link(self, reason: str) -> None:
        summary = self.link.close(reason)
        if summary is not None:
            log.info("session closed (%s): %s", reason, summary)
            self._tell("session_closed", reason=reason, summary=summary)

    def _drop_turn(self, reason: str) -> None:
        log.error("turn dropped: %s", reason)
        self._counts["dropped_turns"] += 1
        self.exit_code = self.exit_code or 1
        self.speaker.flush()
        self._end_session(reason, earcon="error")

    # -- time --------------------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._watchdog is not None:
            self._watchdog.kick()
        self.link.tick(now)
        self._check_link(now)
        st, turn, session = self.state, self.turn, self.config.settings.session
        mic_ended = self._mic_ended_at is not None
        if st is State.SPEAKING and self.link.active_response is None and self.speaker.drained() \
                and not self.tools.running:
            if turn is not None and turn.offline:
                self._offline_done("offline answer spoken")
            elif turn is not None and turn.last:
                self._end_session("the user said goodbye")
            else:
                self._follow_up("reply finished")
        elif st is State.THINKING and now > self._thinking_until and not self.tools.running:
            log.warning("no reply from the server within %.0f s", THINKING_TIMEOUT_S)
            self._follow_up("no reply")
        elif st is State.LISTENING and mic_ended and not (turn is not None and turn.speaking) \
                and now - self._mic_ended_at > INPUT_END_GRACE_S:
            self._end_session("input ended")
        elif st in (State.CONNECTING, State.RECONNECTING) and mic_ended \
                and now - self._mic_ended_at > self.config.settings.reconnect.buffer_s:
            self._drop_turn("the input ended and the server could not be reached for "
                            f"{self.config.settings.reconnect.buffer_s:g} s")
        elif st is State.FOLLOW_UP and (now > self._follow_up_until or mic_ended):
            self._end_session("input ended" if mic_ended else
                              f"no follow-up for {session.follow_up_s:g} s")
        elif st is State.FOLLOW_UP and self.link.ledger is not None \
                and now - self.link.ledger.opened_at > session.max_session_min * 60:
            self._end_session("the session reached its maximum length")
        if mic_ended and self.config.settings.daemon.exit_when_done and (self.state in WAITING or
                self.state in (State.ERROR, State.MUTED)) and self.speaker.drained():
            self._stopping = True

"""The offline side of the conversation: knowing that the service cannot be reached, and the turns
the speaker answers by itself meanwhile.

A part of Conversation (agent.conversation.machine), like server_side.py. The link's health
(agent.offline.link.LinkHealth) is learnt from what the link reports anyway: a session ready, a
connection that failed and why. While the service is down the speaker waits in OFFLINE, and a TCP
probe (no session, nothing billed) runs now and then on a worker thread to see it come back.
A trigger then, or a first connection that fails as unreachable, makes the turn an offline turn:
its audio (the same no-word-lost frames the link would have sent) goes to the OfflineAssistant
until it hears the command end; the answer is made on a worker thread and played from here.
Nothing of this runs while the link is up and the speaker waits.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

import numpy as np

from agent.conversation.reply import SPEECH
from agent.errors import ConnectionFailed
from agent.offline.link import Link, LinkHealth, probe
from agent.state import State

log = logging.getLogger("agent.conversation")

ANSWER_ITEM = "offline"
"""The speaker's item id of an answer made on the device (no server item to truncate)."""
WAITING = frozenset({State.IDLE, State.OFFLINE})


def _on_worker(name: str, work: Callable[[], None]) -> None:
    threading.Thread(target=work, name=name, daemon=True).start()


class OfflineSide:
    """Conversation's offline handlers (mixed into Conversation)."""

    def _new_health(self, check_interval_s: float) -> LinkHealth:
        return LinkHealth(check_interval_s=check_interval_s, on_change=self._link_changed)

    @property
    def waiting(self) -> State:
        """The state of a speaker waiting for a trigger: OFFLINE while the service is unreachable."""
        return State.OFFLINE if self.health.down else State.IDLE

    # -- the link's health ------------------------------------------------------------------------

    def _link_failed(self, failure: ConnectionFailed) -> None:
        """The link lost a connection or could not open one: maybe the service is unreachable."""
        self.health.failed(failure, self._clock())

    def _link_changed(self, link: Link, why: str) -> None:
        """LinkHealth's news (on this thread): shown while waiting; down while the first connection
        is still being tried, the turn is answered on the device."""
        if link is Link.DOWN:
            log.warning("the service cannot be reached: %s", why)
            if self.assistant is not None:
                self.assistant.prepare()  # loads on a worker: ready before the next trigger
        elif link is Link.UP:
            log.info("the service can be reached (%s)", why)
        if self.state in WAITING:
            self._wait(why)
        elif link is Link.DOWN and self._connecting_in_vain():
            self._take_offline()

    def _wait(self, reason: str) -> None:
        """Wait for a trigger: IDLE, or OFFLINE saying why (STATUS=, the log, hooks)."""
        if self.health.down and self.health.reason not in reason:
            reason = f"{reason}; the service cannot be reached: {self.health.reason}"
        elif self.health.down:
            reason = f"the service cannot be reached: {reason}"
        self._show(self.waiting, reason)

    def _check_link(self, now: float) -> None:
        """While the service is down, a probe now and then (on a worker: it may wait seconds).
        Once a conversation's session has opened, the link's own attempts are the checks."""
        if not self.health.check_due(now) or (self.link.active and not self._connecting_in_vain()):
            return
        self.health.checking()
        url = self.config.settings.server.url
        _on_worker("link-check", lambda: self.post("link_checked", probe(url)))

    def _on_link_checked(self, problem: str | None) -> None:
        self.health.checked(problem, self._clock())

    # -- an offline turn ----------------------------------------------------------------------------

    def _connecting_in_vain(self) -> bool:
        """The turn's first session is still being tried (none has opened in this conversation)."""
        first = self.state is State.CONNECTING or \
            (self.state is State.RECONNECTING and self._resume_to is State.CONNECTING)
        return first and self.turn is not None and self.link.active and self.assistant is not None

    def _take_offline(self) -> None:
        """The service cannot be reached before the turn's session opened: the audio held for the
        session is the offline turn's (no word lost, no wait for reconnect.buffer_s)."""
        turn, held = self.turn, list(self.link.owed.frames)
        self._close_link("the service cannot be reached")
        self._resume_to = None
        self._begin_offline(turn, held, "the service cannot be reached; answering on the device")

    def _start_offline_turn(self, source: str, after: list[np.ndarray], manual: bool) -> None:
        """A trigger while the service is known to be unreachable."""
        if self._answering:
            log.warning("%s ignored: the last offline answer is still being made", source)
            return
        self.router.clear()
        self._earcon("wake")
        self._begin_offline(self._begin_turn(source, manual=manual), after,
                            f"{source}; offline, answered on the device")

    def _begin_offline(self, turn, frames: list[np.ndarray], reason: str) -> None:
        turn.offline = True
        self.assistant.begin()
        self._show(State.LISTENING, reason)
        for frame in frames:
            self._hear_offline(frame)
        if self.state is State.LISTENING and self.turn is turn and \
                (turn.released or self._mic_ended_at is not None):
            self._answer_offline("button released" if turn.released else "input ended")

    def _send_frame(self, frame: np.ndarray) -> None:
        """The router's frames: the offline assistant's in an offline turn, else the link's."""
        if self.turn is not None and self.turn.offline:
            self._hear_offline(frame)
        else:
            self.link.send_frame(frame)

    def _hear_offline(self, frame: np.ndarray) -> None:
        if self.state is State.LISTENING and self.assistant.feed(frame):
            self._answer_offline("end of the command")

    def _answer_offline(self, reason: str) -> None:
        """The command is over: act and make the answer off this thread (a tool, espeak-ng)."""
        turn, assistant = self.turn, self.assistant
        self._answering = True
        self._think(reason)

        def work() -> None:
            try:
                answer = assistant.answer()
            except Exception:  # a bug must not leave the speaker thinking for ever
                log.exception("the offline answer failed")
                answer = None
            self.post("offline_answer", turn, answer)

        _on_worker("offline-answer", work)

    def _on_offline_answer(self, turn, answer) -> None:
        self._answering = False
        if answer is None:
            if self.turn is turn and self.state is State.THINKING:
                self._offline_done("the offline answer failed")
            return
        log.info("user (offline): %s", answer.heard.text if answer.heard else "", extra=SPEECH)
        log.info("assistant (offline): %s", answer.text, extra=SPEECH)
        if answer.command is None:
            self.exit_code = self.exit_code or 1  # nothing that was asked could be done
        if self.turn is not turn or self.state not in (State.THINKING, State.MUTED):
            return  # the user took the turn back meanwhile
        self.speaker.play(answer.audio, ANSWER_ITEM)
        if self.state is State.MUTED:  # the command was "mute": say so, stay muted
            self.turn = None
            return
        self._show(State.SPEAKING, "offline answer")

    def _offline_done(self, reason: str) -> None:
        self.turn = None
        self._wait(reason)

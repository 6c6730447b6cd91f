"""The server's side of the conversation: what the session link tells it (ready, an event,
reconnecting, gave up), what each server event does to the state, and tool results coming back.

A part of Conversation (agent.conversation.machine), kept in its own file for reading: the
machine holds the user's side (triggers, buttons, the microphone, time).
"""

from __future__ import annotations

import logging

from agent.conversation.link import ToolOutcome
from agent.errors import EX_CONFIG, ConnectionFailed
from agent.state import State

log = logging.getLogger("agent.conversation")

THINKING_TIMEOUT_S = 20.0
TOOL_GRACE_S = 60.0  # a running tool gets this long on top of THINKING_TIMEOUT_S
INPUT_END_GRACE_S = 2.0  # after the input's end, time for the server to hear the last words


class ServerSide:
    """Conversation's handlers of the link and of server events (mixed into Conversation)."""

    def link_ready(self, resumed: bool, redelivered: str | None) -> None:
        """A session is open and configured (and what a drop left owed was sent again)."""
        self.health.succeeded(self._clock())
        self.audio.restart(self.config.settings.session.output_audio_format)
        if not resumed:
            self._tell("session_opened", host=self.link.conn.host)
        if resumed and self._resume_to is State.FOLLOW_UP and redelivered is None:
            # Still the follow-up window: it ends the session unless the user speaks (the grace
            # lets the server hear the audio kept while reconnecting).
            self._follow_up_until = max(self._follow_up_until, self._clock() + INPUT_END_GRACE_S)
            self._show(State.FOLLOW_UP, "session resumed")
        else:
            if self.turn is None:
                self._begin_turn("follow-up")
            self._show(State.LISTENING, "session resumed" if resumed else "session ready")
        self._resume_to = None
        turn = self.turn
        if redelivered == "outputs":
            self._think("returning what a tool did during the drop")
        elif redelivered == "reply":
            self._think("asking again for the reply cut by the drop")
        elif self.tools.running:
            self._think("a tool is still running", TOOL_GRACE_S)
        elif turn is not None and turn.manual and (turn.released or self._mic_ended_at is not None):
            self._end_turn("button released" if self._mic_ended_at is None else "input ended")

    def link_event(self, event) -> None:
        handler = self._EVENT_HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)
        else:
            log.debug("ignored server event %s", event.type)

    def link_reconnecting(self, failure: ConnectionFailed, delay: float) -> None:
        self._link_failed(failure)
        if self.link.active:  # else the service is unreachable and the turn went offline
            self._retry_link(failure, delay)

    def _retry_link(self, failure: ConnectionFailed, delay: float) -> None:
        log.warning("%s; reconnecting in %.1f s (microphone audio is kept meanwhile)", failure, delay)
        if self.state is not State.RECONNECTING:
            self._resume_to = self.state
            if self.state is State.SPEAKING:
                self.speaker.flush()
            if self.turn is not None:
                self.turn.speaking = False  # the next session's VAD starts afresh
        self._show(State.RECONNECTING, str(failure))

    def link_gave_up(self, failure: ConnectionFailed, auth: bool) -> None:
        self._link_failed(failure)
        if not self.link.active:
            return  # the turn went offline
        if not auth:
            self._drop_turn(str(failure))
            return
        retry = self.config.settings.reconnect.auth_retry_s
        log.error("%s. Not retrying for %.0f s (or until SIGHUP).", failure, retry)
        self._auth_retry_at = self._clock() + retry
        self.exit_code = EX_CONFIG  # only a person can fix a refused key
        self.speaker.flush()
        self._end_session("the server refused the key", earcon="error", then=State.ERROR)

    # -- server events -------------------------------------------------------------------------

    def _ev_speech_started(self, e) -> None:
        if self.turn is None:
            self._begin_turn("follow-up")
        self.turn.speaking = True
        if self.state is State.FOLLOW_UP:
            self._show(State.LISTENING, "user spoke again")

    def _ev_speech_stopped(self, e) -> None:
        if self.turn is not None:
            self.turn.speaking = False
        if self.state is State.LISTENING:
            # Sending stops here (THINKING); only then is the reply asked for, so no frame of
            # this turn can reach the server while the reply streams (Mira cancels it on one).
            self._think("end of speech")
            self.link.ask_reply()

    def _ev_user_words(self, e) -> None:
        self.words.add("user", e, self.link.history, done=e.type.endswith("completed"))

    def _ev_assistant_words(self, e) -> None:
        if not self._ignored(e):
            self.words.add("assistant", e, self.link.history, done=e.type.endswith("done"))

    def _ignored(self, e) -> bool:
        """An event of the reply this turn interrupted: its late audio and words are dropped."""
        return self.turn is not None and self.turn.ignored_response is not None \
            and e.get("response_id") == self.turn.ignored_response

    def _ev_response_created(self, e) -> None:
        if self.state in (State.LISTENING, State.FOLLOW_UP):
            if self.turn is None:
                self._begin_turn("server")
            self._think("reply started")

    def _ev_audio_delta(self, e) -> None:
        if self._ignored(e) or self.state not in (State.THINKING, State.SPEAKING):
            return  # an interrupted reply, or the user already took the turn back
        self.audio.play(self.link.ledger, e)
        if self.state is not State.SPEAKING:
            self._show(State.SPEAKING, "first reply audio")

    def _ev_audio_done(self, e) -> None:
        if self.state is State.SPEAKING and not self._ignored(e):
            self.audio.finish(self.link.ledger, e)

    def _ev_item_added(self, e) -> None:
        self.words.call_added(e.get("item") or {})

    def _ev_function_call(self, e) -> None:
        name = e.name or self.words.call_name(e.call_id)
        self.link.ledger.pending_calls.append((e.call_id, name, e.arguments))

    def _ev_response_done(self, e) -> None:
        ledger = self.link.ledger
        if e.status not in ("completed", "cancelled"):
            self._ratelog(logging.WARNING, f"status:{e.status}",
                          f"reply ended with status {e.status}: "
                          f"{(e.get('response') or {}).get('status_details')}")
        if ledger.pending_calls:
            calls, ledger.pending_calls = ledger.pending_calls, []
            self._think(f"running tool {', '.join(n for _, n, _ in calls)}", TOOL_GRACE_S)
            self.tools.start(calls, generation=self.link.generation, connection=self.link.connection)

    def _ev_error(self, e) -> None:
        self._ratelog(logging.WARNING, f"error:{e.code}",
                      f"server reported an error: {e.code or e.error_type}: {e.message}")

    _EVENT_HANDLERS = {
        "input_audio_buffer.speech_started": _ev_speech_started,
        "input_audio_buffer.speech_stopped": _ev_speech_stopped,
        "conversation.item.input_audio_transcription.delta": _ev_user_words,
        "conversation.item.input_audio_transcription.completed": _ev_user_words,
        "response.audio_transcript.delta": _ev_assistant_words,
        "response.audio_transcript.done": _ev_assistant_words,
        "response.created": _ev_response_created,
        "response.audio.delta": _ev_audio_delta,
        "response.audio.done": _ev_audio_done,
        "response.output_item.added": _ev_item_added,
        "response.function_call_arguments.done": _ev_function_call,
        "response.done": _ev_response_done,
        "error": _ev_error,
    }

    # -- tools -------------------------------------------------------------------------------

    def _on_tools_done(self, generation: int, outcomes: list[ToolOutcome]) -> None:
        self.tools.finished()
        for o in outcomes:
            self._tell("tool_called", name=o.name, ok=o.ok)
        if generation != self.link.generation:
            return  # the session ended while the tool ran
        self.link.deliver(outcomes)  # owed to the next session while reconnecting
        if self.link.ready:
            self._thinking_until = self._clock() + THINKING_TIMEOUT_S


"""What the daemon and the box tell the conversation besides triggers: stop, mute by voice, a
goodbye, a timer ringing or quiet, an audio device lost or back, a reloaded config (SIGHUP).

A part of Conversation (agent.conversation.machine), kept in its own file for reading.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from agent.config import Config
from agent.state import State

log = logging.getLogger("agent.conversation")


@dataclass(frozen=True)
class Reopen:
    """A reloaded part that needs what the running one holds (its GPIO pins): close that first."""

    open: Callable[[], Any]


class Control:
    """Conversation's handlers of control messages (mixed into Conversation)."""

    def _on_stop(self) -> None:
        self._stopping = True

    def _on_mute(self, muted: bool) -> None:
        self._set_muted(muted, "asked by voice")

    def _on_end_after_reply(self) -> None:
        if self.link.active:
            (self.turn or self._begin_turn("follow-up")).last = True

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
            if self.link.active:
                self.speaker.flush()
                self._end_session("audio device lost", earcon=None, then=State.ERROR)
            elif self.state is not State.MUTED:
                self._show(State.ERROR, message)
        else:
            log.info("%s", message)
            self._device_fault = None
            if self.state is State.ERROR and self._clock() >= self._auth_retry_at:
                self._wait(message)

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
            self.link.key = api_key
        self._auth_retry_at = 0.0
        log.info("configuration reloaded")
        if self.state is State.ERROR and self._device_fault is None:
            self._wait("configuration reloaded")

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
            self.router.forget_wake_context()
        if "lights" in parts and self.lights is not None:
            self.lights.show(self.state)

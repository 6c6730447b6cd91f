"""One queue, one thread: what other threads may call (they only post), and the loop that
serves the queue on the conversation's thread. Nothing here changes state."""

from __future__ import annotations

import queue
from typing import Any, Callable

import numpy as np

MAX_BACKLOG = 500  # messages waiting (10 s of frames): past this, new frames are dropped


class Inbox:
    """The conversation's queue; run_loop() hands each message to its handler, in order."""

    def __init__(self):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self.frames_dropped = 0
        """Microphone frames dropped because the loop was MAX_BACKLOG messages behind."""

    def post(self, *message: Any) -> None:
        self._q.put(message)

    def on_frame(self, frame: np.ndarray) -> None:
        # A source faster than real time (an unpaced ALSA device) must not bury the loop:
        # beyond MAX_BACKLOG messages, frames are dropped (and counted) until it catches up.
        if self._q.qsize() > MAX_BACKLOG:
            self.frames_dropped += 1
            return
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

    def run_loop(self, handlers: dict[str, Callable[..., None]], wait_s: Callable[[], float],
                 tick: Callable[[], None]) -> None:
        """Serve messages until a handler sets `_stopping`; tick() after each (or after a wait of
        wait_s() with nothing to do)."""
        while not self._stopping:
            try:
                message = self._q.get(timeout=wait_s())
            except queue.Empty:
                message = None
            if message is not None:
                handlers[message[0]](*message[1:])
            tick()

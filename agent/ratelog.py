"""Logging that cannot flood: each kind of message at most once per interval."""

from __future__ import annotations

import logging
import time


OTHER = "(other kinds)"


class RateLimitedLog:
    """Logs a message of a given kind at most once per `interval_s`, counting what it held back."""

    def __init__(self, logger: logging.Logger, interval_s: float = 60.0, clock=time.monotonic,
                 max_kinds: int = 32):
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, level: int, kind: str, message: str) -> bool:
        """Log `message` unless `kind` was logged within the interval; True when it was logged."""
        now = self._clock()
        if kind not in self._last and len(self._last) >= self._max_kinds:
            self._forget(now)
            if len(self._last) >= self._max_kinds:
                kind = OTHER  # a stream of ever-new kinds (made-up error codes) shares one slot
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        held = self._held.pop(kind, 0)
        suffix = f" ({held} more like it in the last {self._interval:g} s)" if held else ""
        self._last[kind] = now
        self._log.log(level, "%s%s", message, suffix)
        return True

    def _forget(self, now: float) -> None:
        """Drop kinds quiet for a whole interval with nothing held back (bounds the memory too)."""
        for kind, last in list(self._last.items()):
            if now - last >= self._interval and not self._held.get(kind):
                del self._last[kind]

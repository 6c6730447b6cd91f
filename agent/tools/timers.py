"""Kitchen timers: they ring on one scheduler thread, with or without a session open."""

from __future__ import annotations  # Timers.list shadows list in the class body

import heapq
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Timer:
    """One timer: what it is called and when it rings (time.monotonic seconds)."""

    id: int
    label: str
    seconds: float
    due: float

    def remaining(self, now: float | None = None) -> float:
        """Seconds until it rings (0 once due)."""
        return max(0.0, self.due - (time.monotonic() if now is None else now))


class Timers:
    """Set, cancel and list timers; on_ring(timer) when one rings, on_quiet() when none rings any more.

    Callbacks run on the scheduler thread and must only hand off (post to a queue, start a sound).
    A ringing timer rings until stop_ringing(), cancel() or ring_s seconds pass.
    """

    def __init__(self, on_ring: Callable[[Timer], None], on_quiet: Callable[[], None] = lambda: None,
                 *, ring_s: float = 60.0, max_timers: int = 10):
        self._on_ring, self._on_quiet = on_ring, on_quiet
        self._ring_s, self._max = ring_s, max_timers
        self._cond = threading.Condition()
        self._pending: dict[int, Timer] = {}
        self._ringing: dict[int, tuple[Timer, float]] = {}  # id -> (timer, stops at)
        self._heap: list[tuple[float, int]] = []
        self._next_id = 1
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def set(self, seconds: float, label: str = "") -> Timer:
        """Start a timer; ValueError for a bad duration or too many timers."""
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"a timer lasts more than 0 and at most {MAX_SECONDS} seconds, "
                             f"not {seconds}")
        with self._cond:
            if self._closed:
                raise ValueError("timers are closed")
            if len(self._pending) >= self._max:
                raise ValueError(f"{self._max} timers are already running; cancel one first")
            timer = Timer(self._next_id, label, float(seconds), time.monotonic() + seconds)
            self._next_id += 1
            self._pending[timer.id] = timer
            heapq.heappush(self._heap, (timer.due, timer.id))
            self._cond.notify()
        log.info("timer %d set for %.0f s", timer.id, seconds)
        return timer

    def cancel(self, timer_id: int) -> Timer | None:
        """Cancel a pending timer or silence a ringing one; None when there is no such timer."""
        with self._cond:
            timer = self._pending.pop(timer_id, None)
            rang = self._ringing.pop(timer_id, None)
            quiet = rang is not None and not self._ringing
            self._cond.notify()
        if quiet:
            self._call(self._on_quiet)
        return timer or (rang[0] if rang else None)

    def list(self) -> list[Timer]:
        """Pending timers, soonest first."""
        with self._cond:
            return sorted(self._pending.values(), key=lambda t: t.due)

    def ringing(self) -> list[Timer]:
        """Timers ringing now."""
        with self._cond:
            return [t for t, _ in self._ringing.values()]

    def stop_ringing(self) -> list[Timer]:
        """Silence every ringing timer (a button press, the wake word); returns them."""
        with self._cond:
            stopped = [t for t, _ in self._ringing.values()]
            self._ringing.clear()
        if stopped:
            self._call(self._on_quiet)
        return stopped

    def close(self) -> None:
        """Stop the scheduler; pending timers are dropped. Idempotent."""
        with self._cond:
            self._closed = True
            self._pending.clear()
            self._ringing.clear()
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> "Timers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                rang, quiet = self._due(now)
                if not rang and not quiet:
                    self._cond.wait(self._next_deadline(now))
                    continue
            for timer in rang:
                log.info("timer %d rings", timer.id)
                self._call(self._on_ring, timer)
            if quiet:
                self._call(self._on_quiet)

    def _due(self, now: float) -> tuple[list[Timer], bool]:
        """Move due timers to ringing and drop ringing ones past ring_s (lock held)."""
        rang = []
        while self._heap and self._heap[0][0] <= now:
            _, tid = heapq.heappop(self._heap)
            timer = self._pending.pop(tid, None)
            if timer:  # else it was cancelled
                self._ringing[tid] = (timer, now + self._ring_s)
                rang.append(timer)
        expired = [tid for tid, (_, stop) in self._ringing.items() if stop <= now]
        for tid in expired:
            del self._ringing[tid]
        return rang, bool(expired) and not self._ringing

    def _next_deadline(self, now: float) -> float | None:
        deadlines = [d for d, tid in self._heap[:1]] + [s for _, s in self._ringing.values()]
        return max(0.0, min(deadlines) - now) if deadlines else None

    @staticmethod
    def _call(callback: Callable, *args) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("timer callback %s failed", getattr(callback, "__name__", callback))

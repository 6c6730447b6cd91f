"""Timers ring on their own thread, are cancelled, stopped, and stop by themselves."""

import queue
import threading
import time

import pytest

from agent.tools.timers import Timers


class Bell:
    """Records the callbacks the daemon would get (earcon + LED pattern, then quiet)."""

    def __init__(self):
        self.rang: queue.Queue = queue.Queue()
        self.quiet = threading.Event()

    def ring(self, timer):
        self.rang.put(timer)

    def silence(self):
        self.quiet.set()


@pytest.fixture
def bell():
    return Bell()


def test_timer_rings_once_due_and_rings_until_stopped(bell):
    """on_ring gets the timer near its due time; stop_ringing silences it and calls on_quiet."""
    with Timers(bell.ring, bell.silence) as timers:
        t0 = time.monotonic()
        timer = timers.set(0.2, "tea")
        rang = bell.rang.get(timeout=2)
        late = time.monotonic() - t0
        assert rang == timer and rang.label == "tea"
        assert 0.18 <= late < 0.6
        assert timers.ringing() == [timer] and timers.list() == []
        assert not bell.quiet.is_set()
        assert timers.stop_ringing() == [timer]
        assert bell.quiet.is_set() and timers.ringing() == []


def test_cancelled_timer_never_rings(bell):
    """A timer cancelled before it is due does not ring; the other one still does."""
    with Timers(bell.ring, bell.silence) as timers:
        doomed = timers.set(0.1, "doomed")
        kept = timers.set(0.2, "kept")
        assert timers.cancel(doomed.id) == doomed
        assert bell.rang.get(timeout=2) == kept
        assert bell.rang.empty()
        assert timers.cancel(999) is None


def test_ringing_stops_by_itself_after_ring_s(bell):
    """A timer nobody stops falls quiet after ring_s."""
    with Timers(bell.ring, bell.silence, ring_s=0.2) as timers:
        timers.set(0.05)
        bell.rang.get(timeout=2)
        assert bell.quiet.wait(2)
        assert timers.ringing() == []


def test_cancelling_a_ringing_timer_silences_it(bell):
    """cancel() on a ringing timer stops it and reports quiet."""
    with Timers(bell.ring, bell.silence) as timers:
        t = timers.set(0.05)
        bell.rang.get(timeout=2)
        assert timers.cancel(t.id) == t
        assert bell.quiet.is_set()


def test_list_is_soonest_first_with_remaining_time(bell):
    """list() orders pending timers by due time."""
    with Timers(bell.ring) as timers:
        late = timers.set(300, "late")
        soon = timers.set(60, "soon")
        assert timers.list() == [soon, late]
        assert 59 < soon.remaining() <= 60


def test_limits_are_enforced(bell):
    """Bad durations and too many timers are ValueErrors with a reason."""
    with Timers(bell.ring, max_timers=2) as timers:
        for bad in (0, -5, 86401):
            with pytest.raises(ValueError, match="at most 86400"):
                timers.set(bad)
        timers.set(100)
        timers.set(100)
        with pytest.raises(ValueError, match="2 timers are already running"):
            timers.set(100)


def test_a_failing_callback_does_not_stop_the_scheduler(bell):
    """An exception in on_ring is logged; later timers still ring."""
    calls = []

    def broken(timer):
        calls.append(timer)
        if len(calls) == 1:
            raise RuntimeError("speaker unplugged")
        bell.ring(timer)

    with Timers(broken) as timers:
        timers.set(0.05)
        second = timers.set(0.15)
        assert bell.rang.get(timeout=2) == second


def test_close_is_idempotent_and_stops_the_thread(bell):
    """close() twice is fine; set() after close is refused; pending timers never ring."""
    timers = Timers(bell.ring)
    timers.set(0.1)
    timers.close()
    timers.close()
    with pytest.raises(ValueError, match="closed"):
        timers.set(1)
    time.sleep(0.2)
    assert bell.rang.empty()
    assert not timers._thread.is_alive()

"""The playout buffer: order, silence on underrun, positions, flush, gain, reference."""

import threading

import numpy as np
import pytest

from agent.audio.playout import PlayoutBuffer, ReferenceRing, volume_to_gain


class Clock:
    """A hand-driven clock for exact position arithmetic."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def ramp(n, start=0):
    return (np.arange(start, start + n) % 20000).astype(np.int16)


def read(buf, n, **kw):
    out = np.empty(n, dtype=np.int16)
    got = buf.read(out, **kw)
    return out, got


def test_reads_return_every_sample_in_order_across_writes():
    """Writes of odd sizes come out of fixed-size reads unchanged and in order."""
    buf = PlayoutBuffer(paced=False)
    src = ramp(10_000)
    for a, b in [(0, 1), (1, 700), (700, 5003), (5003, 10_000)]:
        buf.write(src[a:b], "item")
    outs = [read(buf, 480)[0] for _ in range(21)]
    np.testing.assert_array_equal(np.concatenate(outs)[:10_000], src)
    assert buf.queued_samples == 0


def test_starved_read_fades_to_silence_without_a_click():
    """When audio runs out mid-block the rest is silence reached by a 2 ms fade, not a step."""
    buf = PlayoutBuffer(paced=False)
    buf.write(np.full(100, 20000, dtype=np.int16), "a")
    out, got = read(buf, 480)
    assert got == 100
    assert np.all(out[:100] == 20000)
    assert np.max(np.abs(np.diff(out.astype(int)))) <= 20000 / 48 + 1
    assert not out[148:].any()


def test_gap_inside_an_item_counts_as_an_underrun_but_a_gap_between_items_does_not():
    """Silence between two chunks of one item is an underrun; between items it is not."""
    buf = PlayoutBuffer(paced=False)
    buf.write(ramp(480), "a")
    read(buf, 480)
    read(buf, 480)  # nothing queued: silence
    buf.write(ramp(480), "a")
    assert buf.underruns == 1 and buf.underrun_samples == 480
    read(buf, 480)
    read(buf, 480)
    buf.write(ramp(480), "b")
    assert buf.underruns == 1


def test_played_position_subtracts_what_is_still_in_the_device():
    """Positions count handed samples minus the read's device delay, advancing with the clock."""
    clock = Clock()
    buf = PlayoutBuffer(clock=clock, latency=0.05)
    buf.write(ramp(24000), "a")
    read(buf, 4800)                      # 200 ms handed; the first sample is heard 50 ms from now
    assert buf.played_samples("a") == 0
    clock.now += 0.05
    assert buf.played_samples("a") == 0
    clock.now += 0.1
    assert buf.played_samples("a") == 2400
    clock.now += 1.0                    # nothing more read: at most what was handed
    assert buf.played_samples("a") == 4800
    read(buf, 4800, delay=0.02)
    assert buf.played_samples("a") == 4800
    clock.now += 0.02 + 0.1
    assert buf.played_samples("a") == 4800 + 2400


def test_positions_are_per_item():
    """Each item's position counts only its own samples, silence excluded."""
    buf = PlayoutBuffer(paced=False)
    buf.write(ramp(1000), "a")
    buf.write(ramp(300), "b")
    read(buf, 2000)
    buf.write(ramp(50), "c")
    assert buf.positions() == {"a": 1000, "b": 300, "c": 0}
    assert buf.played_samples("unknown") == 0


def test_flush_drops_the_queue_silences_the_next_read_and_returns_positions():
    """flush() returns heard samples per item, and the next read has no queued audio in it."""
    clock = Clock()
    buf = PlayoutBuffer(clock=clock)
    buf.write(np.full(24000, 1000, dtype=np.int16), "a")
    read(buf, 480)
    clock.now += 0.01
    assert buf.flush() == {"a": 240}
    out, got = read(buf, 480)
    assert got == 0 and not out[48:].any()
    assert buf.queued_samples == 0 and buf.flushes == 1
    clock.now += 1
    assert buf.drained()


def test_drained_waits_for_the_device_to_play_out():
    """drained() is false while audio is queued or still in the device buffer."""
    clock = Clock()
    buf = PlayoutBuffer(clock=clock, latency=0.04)
    assert buf.drained()
    buf.write(ramp(480), "a")
    assert not buf.drained()
    read(buf, 480)
    assert not buf.drained()
    clock.now += 0.04 + 0.02
    assert buf.drained()


def test_volume_scales_the_audio_and_glides_to_a_new_value():
    """Volume 50 % is gain 0.25; a change glides over one block instead of stepping."""
    assert volume_to_gain(50) == 0.25 and volume_to_gain(0) == 0
    with pytest.raises(ValueError):
        volume_to_gain(101)
    buf = PlayoutBuffer(paced=False, volume=50)
    buf.write(np.full(960, 20000, dtype=np.int16), "a")
    out, _ = read(buf, 480)
    assert np.all(out == 5000)
    buf.volume = 100
    out, _ = read(buf, 480)
    assert out[0] == 5000 and out[-1] == 20000 and np.all(np.diff(out.astype(int)) >= 0)


def test_reference_ring_holds_exactly_what_was_played():
    """The reference holds each block as played (gain and silence included), in order."""
    buf = PlayoutBuffer(paced=False, volume=50)
    buf.write(np.full(300, 4000, dtype=np.int16), "a")
    played = [read(buf, 480)[0] for _ in range(3)]
    got = buf.reference.read(1440)
    np.testing.assert_array_equal(got, np.concatenate(played))
    assert buf.reference.read(1) is None


def test_reference_ring_skips_the_oldest_when_its_reader_lags():
    """A ring of 1000 written 1500 keeps the newest 1000 and counts 500 dropped."""
    ring = ReferenceRing(1000)
    ring.write(ramp(700))
    ring.write(ramp(800, 700))
    assert ring.dropped == 500 and ring.available == 1000
    np.testing.assert_array_equal(ring.read(1000), ramp(1000, 500))


def test_on_played_sees_each_block():
    """The on_played hook gets every block the device reads."""
    buf = PlayoutBuffer(paced=False)
    seen = []
    buf.on_played = lambda block: seen.append(block.copy())
    buf.write(ramp(500), "a")
    read(buf, 480)
    read(buf, 480)
    assert [len(b) for b in seen] == [480, 480]
    np.testing.assert_array_equal(seen[0], ramp(480))


def test_concurrent_writer_and_reader_lose_nothing():
    """A writer thread and a reader thread together pass 5 s of audio through intact."""
    buf = PlayoutBuffer(paced=False)
    src = ramp(120_000)
    got, total = [], 0

    def writer():
        for i in range(0, len(src), 777):
            buf.write(src[i:i + 777], "a")

    t = threading.Thread(target=writer)
    t.start()
    block = np.empty(256, dtype=np.int16)
    for _ in range(1_000_000):
        n = buf.read(block)
        got.append(block[:n].copy())
        total += n
        if total == len(src):
            break
    t.join()
    np.testing.assert_array_equal(np.concatenate(got), src)


def test_the_device_may_rest_once_nothing_was_queued_for_a_while_and_a_write_wakes_it():
    """rest(after_s) says yes only when nothing was queued for after_s (a queue that ran
    empty, or a flush, starts the wait); the reference is then paused, and the next write
    returns True once (the device must start) and makes the reference count a new run."""
    clock = Clock()
    buf = PlayoutBuffer(clock=clock)
    assert not buf.rest(5.0)  # nothing read yet: not known to be idle
    buf.write(ramp(960), "a")
    read(buf, 480)
    clock.now += 10
    assert not buf.rest(5.0)  # audio still queued
    read(buf, 480)
    read(buf, 480)  # the queue ran empty here
    clock.now += 4.9
    assert not buf.rest(5.0)
    clock.now += 0.2
    runs = buf.reference.runs
    assert buf.rest(5.0) and buf.reference.paused
    assert buf.write(ramp(480), "b") is True
    assert buf.write(ramp(480), "b") is False
    read(buf, 480)
    assert not buf.reference.paused and buf.reference.runs == runs + 1
    buf.flush()
    clock.now += 5.1
    read(buf, 480)
    assert buf.rest(5.0)


def test_reference_ring_counts_a_run_each_time_the_stream_runs_again():
    """pause() (a stop) and cut() (an abort) mark the stream stopped; its next block starts a
    new run; the samples keep their order."""
    ring = ReferenceRing(4000)
    ring.write(ramp(480))
    assert ring.runs == 1 and not ring.paused
    ring.pause()
    assert ring.paused and ring.runs == 1
    ring.write(ramp(480, 480))
    ring.cut()
    ring.write(ramp(480, 960))
    assert ring.runs == 3 and not ring.paused
    np.testing.assert_array_equal(ring.read(1440), ramp(1440))


def _calls(watch, calls):
    """Feeds (time, delay) calls of 20 ms blocks; returns which ones said 'swallowed'."""
    return [watch.swallowed(t, d, 0.02) for t, d in calls]


def _restarted():
    """A watch on a device seen to play in real time, whose stream just started again."""
    from agent.audio.playback import SwallowWatch

    watch = SwallowWatch()
    _calls(watch, [(-1.0, 0.04), (-0.98, 0.04)])
    watch.restart()
    return watch


def test_a_device_that_swallows_blocks_at_a_restart_is_told_from_one_that_fills_up():
    """A stream's start fills the device (delay 0, 20, 40 ms, a call each ms): nothing
    swallowed; PulseAudio's restart after a rest (a call each ~1.2 ms, the delay staying 0,
    as measured in the daemon: 81 calls, 1.6 s never heard) swallows every block until the
    delay grows again."""
    filling = [(0.0, 0.0), (0.001, 0.019), (0.002, 0.038), (0.02, 0.05), (0.04, 0.05)]
    assert _calls(_restarted(), filling) == [False] * 5
    swallowing = [(0.0012 * i, 0.0) for i in range(81)] + [(0.0985, 0.0391), (0.1585, 0.0396)]
    said = _calls(_restarted(), swallowing)
    assert said == [False] + [True] * 80 + [False, False]


def test_only_a_restart_swallows_and_a_device_faster_than_real_time_does_not():
    """Two calls 0.2 ms apart whose delay grew by a block (PortAudio's jitter) and a late call
    whose delay fell (the device ran low) are no swallow; once ARMED_S went by with blocks
    kept, nothing is (a catch-up after a stall mid-reply, however its delay reads); a device
    never seen to play in real time (ALSA's file plugin: calls back to back, its delay 0 for
    ever) swallows nothing, restart or not; after MOST_S swallowed the watch ends; a device
    giving no figures: nothing to compare."""
    from agent.audio.playback import SwallowWatch

    watch = _restarted()
    assert _calls(watch, [(0.0, 0.040), (0.0288, 0.0323), (0.029, 0.0521), (0.06, 0.041),
                          (0.115, 0.001)]) == [False] * 5
    assert watch.armed  # (0.115 s into the watch)
    assert _calls(watch, [(2.1, 0.04), (2.1005, 0.0)]) == [False, False] and not watch.armed
    unpaced = SwallowWatch()
    unpaced.restart()
    assert not any(_calls(unpaced, [(1e-5 * i, 0.0) for i in range(400)]))
    unpaced.restart()
    assert not unpaced.paced and not any(_calls(unpaced, [(1e-5 * i, 0.0) for i in range(9)]))
    most = int(SwallowWatch.MOST_S / 0.02)
    said = _calls(_restarted(), [(1e-4 * i, 0.0) for i in range(most + 5)])
    assert said == [False] + [True] * most + [False] * 4
    watch = _restarted()
    watch.reset()
    assert watch.swallowed(0.116, 0.0, 0.02) is False

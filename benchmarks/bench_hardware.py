"""Hardware figures: how fast a state shows on an APA102 chain, and what a hook costs the loop.

The chain's bus writes each frame to a real file descriptor (a pipe drained by a thread), where
a Pi's kernel would clock it out over SPI; the time is taken as the write returns. The hook runs a
real program (`true`) for every event while the calls are timed on the calling thread, as the
conversation thread calls it.
"""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Row, median, percentile

from agent.gpio.apa102 import APA102Lights, pattern
from agent.gpio.settings import LedSettings
from agent.hooks import HookRunner, HookSettings
from agent.state import State

CHANGES = 400
HOOK_EVENTS = 400


class PipeBus:
    """An SPI bus stand-in that really writes: os.write into a pipe another thread drains."""

    def __init__(self):
        self._r, self._w = os.pipe()
        self.writes: list[tuple[float, bytes]] = []
        self.changed = threading.Condition()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        while os.read(self._r, 65536):
            pass

    def write(self, data: bytes) -> None:
        os.write(self._w, data)
        now = time.perf_counter()
        with self.changed:
            self.writes.append((now, data))
            self.changed.notify_all()

    def close(self) -> None:
        if self._w is None:
            return
        os.close(self._w)
        self._w = None
        self._drain.join(2)
        os.close(self._r)

    def first_since(self, start: int, frame: bytes, timeout: float = 2.0) -> float | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for t, data in self.writes[start:]:
                    if data == frame:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)


def apa102_latency() -> list[Row]:
    """show() while a moving pattern runs -> the new pattern's first frame written, alternating the
    pulse (speaking) and the spinning dot (thinking) on the ReSpeaker's three LEDs."""
    settings = LedSettings(kind="apa102", count=3)
    lights_of = settings.lights()
    bus = PipeBus()
    lights = APA102Lights(settings, bus=bus)
    first = {s: lights.chain.frame(pattern(lights_of[s.value], 3, settings.dim_level).frames[0])
             for s in (State.SPEAKING, State.THINKING)}
    times, missed = [], 0
    try:
        for i in range(CHANGES):
            state = State.SPEAKING if i % 2 else State.THINKING
            with bus.changed:
                mark = len(bus.writes)
            t0 = time.perf_counter()
            lights.show(state)
            written = bus.first_since(mark, first[state])
            if written is None:
                missed += 1
            else:
                times.append((written - t0) * 1000)
            time.sleep(0.01 + (i % 7) * 0.007)  # land at different points of the running pattern
    finally:
        lights.close()  # closes the bus too
    name = "state change -> first APA102 frame written"
    if not times:
        return [Row(name, "no frame written", "<= 2 ms", False)]
    med, p99 = median(times), percentile(times, 99)
    sane = missed == 0 and all(0 < t < 10_000 for t in times)
    return [Row(f"{name} (median)", f"{med:.3f} ms", "<= 2 ms", sane and med <= 2.0),
            Row(f"{name} (p99)", f"{p99:.3f} ms", "<= 20 ms", sane and p99 <= 20.0)]


def hook_cost() -> list[Row]:
    """HookRunner.state() on the calling thread while a real program runs for each event."""
    program = shutil.which("true")
    folder = Path(tempfile.mkdtemp(prefix="bench-hooks-"))
    hooks = HookRunner(HookSettings(argv=[program]), lambda p: folder / p)
    costs = []
    try:
        states = [State.LISTENING, State.THINKING, State.SPEAKING, State.FOLLOW_UP]
        for i in range(HOOK_EVENTS):
            t0 = time.perf_counter_ns()
            hooks.state(states[i % 4], "bench")
            costs.append((time.perf_counter_ns() - t0) / 1000)
            time.sleep(0.002)
        deadline = time.monotonic() + 30
        while hooks.runs < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        ran = hooks.runs
    finally:
        hooks.close()
        shutil.rmtree(folder, ignore_errors=True)
    med = median(costs)
    sane = ran >= 10 and all(c > 0 for c in costs)  # the program really ran while it was timed
    return [Row("hook launch cost on the conversation thread (median)", f"{med:.1f} us", "<= 100 us",
                sane and med <= 100)]


def rows() -> list[Row]:
    return apa102_latency() + hook_cost()

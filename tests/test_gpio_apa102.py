"""APA102 LED chains: the exact bytes each state writes to the SPI bus, brightness, the end frame,
a new state interrupting a running pattern, the volume level, and the SPI device's errors.

The seam is the /dev/spidevB.D boundary: the driver's bus is a recording one (what a write() to
the device file would carry), since no SPI controller exists here.
"""

import logging
import threading
import time

import pytest

from agent.config import parse
from agent.errors import HardwareError
from agent.gpio import factory, lights as lights_mod
from agent.gpio.apa102 import APA102, APA102Lights, level_colors, pattern
from agent.gpio.settings import LedSettings, LightSettings
from agent.gpio.spi import SpiDev
from agent.state import State

START = bytes(4)
END_UP_TO_16 = bytes(5)  # 32 zero bits for an SK9822 to latch + n/2 clock edges (n <= 16: 1 byte)


class RecordingBus:
    """The device file's side of the driver: every write() kept in order, with its time."""

    def __init__(self):
        self.writes: list[tuple[float, bytes]] = []
        self.closed = 0
        self._changed = threading.Condition()

    def write(self, data: bytes) -> None:
        with self._changed:
            self.writes.append((time.monotonic(), bytes(data)))
            self._changed.notify_all()

    def close(self) -> None:
        self.closed += 1

    def forget(self) -> None:
        """Start the record afresh."""
        with self._changed:
            self.writes.clear()

    def frames(self, start: int = 0) -> list[bytes]:
        with self._changed:
            return [data for _, data in self.writes[start:]]

    def count(self) -> int:
        with self._changed:
            return len(self.writes)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[bytes]:
        """The first n frames, waiting (bounded) for them to be written."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.writes) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"only {len(self.writes)} of {n} frames written"
                self._changed.wait(left)
            return [data for _, data in self.writes[:n]]

    def wait_frame(self, frame: bytes, start: int = 0, timeout: float = 5.0) -> int:
        """Index of the first write of `frame` from `start` on."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i in range(start, len(self.writes)):
                    if self.writes[i][1] == frame:
                        return i
                left = deadline - time.monotonic()
                assert left > 0, f"{frame.hex()} never written; got {[w.hex() for _, w in self.writes[start:]]}"
                self._changed.wait(left)


def leds(*colors: tuple[int, int, int], head: int = 0xE8) -> bytes:
    """The expected frame for these (red, green, blue) colours at brightness head & 31."""
    return START + b"".join(bytes((head, b, g, r)) for r, g, b in colors) + END_UP_TO_16


def in_order(got: list[bytes], expected: list[bytes]) -> bool:
    """got is expected with some frames left out (a subsequence)."""
    rest = iter(expected)
    return all(any(f == e for e in rest) for f in got)


def same(color, n=3, **kw) -> bytes:
    return leds(*[color] * n, **kw)


DARK = same((0, 0, 0))
BLUE, CYAN, GREEN, RED = (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 0, 0)
ORANGE, YELLOW = (255, 102, 0), (255, 255, 0)


@pytest.fixture
def bus():
    return RecordingBus()


def opened(settings: LedSettings, bus: RecordingBus) -> APA102Lights:
    """Lights on the recording bus, past the dark frame that clears the chain at open."""
    lights = APA102Lights(settings, bus=bus)
    assert bus.wait_for(1) == [leds(*[(0, 0, 0)] * settings.count, head=0xE0 | settings.brightness)]
    bus.forget()
    return lights


@pytest.fixture
def chain(bus):
    with opened(LedSettings(kind="apa102"), bus) as lights:
        yield lights


def test_a_frame_is_start_then_brightness_blue_green_red_per_led_then_zeros():
    """Three LEDs at brightness 8: 00000000, E8 b g r x3, 32 + 8 zero bits (21 bytes)."""
    chain = APA102(RecordingBus(), 3, 8)
    frame = chain.frame(((0x11, 0x22, 0x33), (0x44, 0x55, 0x66), (0x77, 0x88, 0x99)))
    assert frame.hex(" ") == ("00 00 00 00 e8 33 22 11 e8 66 55 44 e8 99 88 77 "
                              "00 00 00 00 00")


def test_the_end_frame_grows_with_the_chain_by_a_byte_per_16_leds():
    """12 LEDs: 4 + 48 + 5 bytes; 17 LEDs need 9 clock edges: 4 + 68 + 6 bytes; all ends are zeros."""
    twelve = APA102(RecordingBus(), 12, 31).frame(((1, 2, 3),) * 12)
    assert twelve == START + bytes((0xFF, 3, 2, 1)) * 12 + bytes(5) and len(twelve) == 57
    seventeen = APA102(RecordingBus(), 17, 31).frame(((0, 0, 0),) * 17)
    assert seventeen == START + bytes((0xFF, 0, 0, 0)) * 17 + bytes(6)


@pytest.mark.parametrize("brightness, head", [(1, 0xE1), (8, 0xE8), (31, 0xFF)])
def test_brightness_is_the_low_five_bits_of_each_leds_first_byte(bus, brightness, head):
    """[leds] brightness 1..31 goes into 0xE0 | brightness of every LED."""
    with opened(LedSettings(kind="apa102", brightness=brightness), bus) as lights:
        lights.show(State.MUTED)
        assert bus.wait_frame(same(RED, head=head)) == 0


@pytest.mark.parametrize("state, first", [
    (State.IDLE, DARK),
    (State.LISTENING, same(BLUE)),
    (State.FOLLOW_UP, same((0, 0, 26))),        # dim: 0.1 of 255
    (State.MUTED, same(RED)),
])
def test_each_steady_state_writes_its_frame_once(bus, chain, state, first):
    """idle dark, listening blue, follow-up dim blue, muted red: one frame, then nothing more."""
    chain.show(state)
    assert bus.wait_for(1) == [first]
    time.sleep(0.3)
    assert bus.frames() == [first]


@pytest.mark.parametrize("state, cycle, step_s", [
    (State.CONNECTING, [leds(BLUE, (0, 0, 0), (0, 0, 64)), leds((0, 0, 64), BLUE, (0, 0, 0)),
                        leds((0, 0, 0), (0, 0, 64), BLUE)], 0.25),
    (State.THINKING, [leds(CYAN, (0, 0, 0), (0, 64, 64)), leds((0, 64, 64), CYAN, (0, 0, 0)),
                      leds((0, 0, 0), (0, 64, 64), CYAN)], 0.25),
    (State.RECONNECTING, [same(ORANGE), DARK, DARK, DARK], 0.5),
    (State.ERROR, [same(RED), DARK], 0.1),
], ids=["connecting-spins-blue", "thinking-spins-cyan", "reconnecting-slow-orange", "error-fast-red"])
def test_each_moving_state_loops_its_frames_in_order(bus, chain, state, cycle, step_s):
    """A spinning dot (with a quarter-bright tail) or a blink: the exact frames, in order, on time."""
    chain.show(state)
    got = bus.wait_for(len(cycle) + 1, timeout=10)
    assert got[0] == cycle[0]
    # On a loaded machine the player may skip a late frame, but never reorder or invent one.
    assert in_order(got, cycle * 10), [f.hex() for f in got]
    assert pattern(LedSettings(kind="apa102").lights()[state.value], 3, 0.1).step_s == step_s


def test_speaking_breathes_green_up_and_down_over_two_seconds():
    """The pulse: 50 frames 40 ms apart, dark -> full green at frame 25 -> back down."""
    p = pattern(LedSettings(kind="apa102").lights()["speaking"], 3, 0.1)
    greens = [frame[0][1] for frame in p.frames]
    assert p.step_s == 0.04 and len(greens) == 50
    assert greens[0] == 0 and greens[25] == 255 and greens[1] == 10 and greens[49] == 10
    assert greens[:26] == sorted(greens[:26]) and greens[25:] == sorted(greens[25:], reverse=True)
    assert all(frame[0][0] == frame[0][2] == 0 and len(set(frame)) == 1 for frame in p.frames)


def test_a_ringing_timer_blinks_yellow(bus, chain):
    """ring(): yellow on, dark, every 0.1 s."""
    chain.ring()
    assert bus.wait_for(2) == [same(YELLOW), DARK]


def test_a_new_state_interrupts_a_running_pattern_at_once(bus, chain):
    """show() during the pulse returns at once; at most the frame already in flight follows it
    before the new state's frame, and the pulse writes nothing after that."""
    chain.show(State.SPEAKING)
    bus.wait_for(5)
    t0 = time.monotonic()
    chain.show(State.MUTED)
    took = time.monotonic() - t0
    mark = bus.count()
    first = bus.wait_frame(same(RED), start=max(0, mark - 1))
    assert first - mark <= 1, bus.frames(mark)
    time.sleep(0.3)
    assert bus.frames(first) == [same(RED)]
    assert took < 0.1  # a hand-over under a lock, no write and no thread start


def test_the_same_state_again_does_not_restart_its_pattern(bus, chain):
    """show(RECONNECTING) twice in the 1.5 s dark phase: no orange flash."""
    chain.show(State.RECONNECTING)
    bus.wait_for(2)  # orange, then the first dark frame
    chain.show(State.RECONNECTING)
    time.sleep(0.2)
    assert bus.frames(1) == [DARK] * (bus.count() - 1)


def test_per_state_colour_and_pattern_overrides_reach_the_bytes(bus):
    """[leds.states.listening] pattern = on, color = #102030; [leds.states.idle] pattern = dim white."""
    settings = parse({"leds": {"kind": "apa102", "dim_level": 0.5, "states": {
        "listening": {"pattern": "on", "color": "#102030"},
        "idle": {"pattern": "dim", "color": "white"}}}}).settings.leds
    with opened(settings, bus) as lights:
        lights.show(State.LISTENING)
        lights_first = bus.wait_frame(same((0x10, 0x20, 0x30)))
        lights.show(State.IDLE)
        bus.wait_frame(same((128, 128, 128)), start=lights_first + 1)


def test_a_volume_level_shows_as_a_white_bar_then_the_state_returns(bus, chain, monkeypatch):
    """level(50) on three LEDs: full, half, dark; after LEVEL_S the state's frame again."""
    monkeypatch.setattr(lights_mod, "LEVEL_S", 0.2)
    assert level_colors(0.5, 3) == ((255,) * 3, (128,) * 3, (0,) * 3)
    chain.show(State.LISTENING)
    bus.wait_for(1)
    chain.level(50)
    assert chain.showing == "level"
    bar = bus.wait_frame(leds((255, 255, 255), (128, 128, 128), (0, 0, 0)))
    back = bus.wait_frame(same(BLUE), start=bar + 1)
    assert chain.showing == "listening" and back == bar + 1


def test_a_state_change_ends_the_level_display_early(bus, chain, monkeypatch):
    """A new state during the level display shows at once and the level's timer does not undo it."""
    monkeypatch.setattr(lights_mod, "LEVEL_S", 0.2)
    chain.show(State.IDLE)
    chain.level(100)
    bar = bus.wait_frame(same((255, 255, 255)))
    chain.show(State.MUTED)
    red = bus.wait_frame(same(RED), start=bar + 1)
    time.sleep(0.4)
    assert bus.frames(red) == [same(RED)] and chain.showing == "muted"


def test_opening_clears_the_chain_and_close_darkens_it_once(bus):
    """The first write is a dark frame (an old run's colours go); at exit the LEDs go dark, a second
    close() does nothing, and show() after close is ignored."""
    lights = APA102Lights(LedSettings(kind="apa102"), bus=bus)
    assert bus.wait_for(1) == [DARK]
    lights.show(State.SPEAKING)
    bus.wait_for(3)
    lights.close()
    lights.close()
    n = bus.count()
    assert bus.frames()[-1] == DARK and bus.closed == 1
    lights.show(State.MUTED)
    time.sleep(0.1)
    assert bus.count() == n


def test_a_failing_write_is_logged_once_and_the_pattern_goes_on(caplog):
    """The device file refusing writes (EIO): one warning naming it, and later frames are still tried."""
    class FailingBus(RecordingBus):
        path = "/dev/spidev0.1"

        def write(self, data):
            super().write(data)
            raise OSError(5, "Input/output error")

    bus = FailingBus()
    with caplog.at_level(logging.WARNING), APA102Lights(LedSettings(kind="apa102"), bus=bus) as lights:
        lights.show(State.ERROR)
        bus.wait_for(7)
    failures = [r for r in caplog.records if "writing to /dev/spidev0.1 failed" in r.getMessage()]
    assert len(failures) == 1 and "Input/output error" in failures[0].getMessage()


def test_a_missing_spi_device_names_the_fix(tmp_path):
    """No /dev/spidevB.D (SPI off): HardwareError with the path and how to turn SPI on."""
    with pytest.raises(HardwareError, match=r"spidev9\.0 does not exist: turn SPI on \(dtparam=spi=on"):
        SpiDev(str(tmp_path / "spidev9.0"), 8_000_000)


def test_a_file_that_is_not_an_spi_device_is_refused(tmp_path):
    """A regular file answers the speed ioctl with ENOTTY: refused, naming the settings to check."""
    path = tmp_path / "spidev0.1"
    path.write_bytes(b"")
    with pytest.raises(HardwareError, match="is not an SPI device .* spi_bus and spi_device"):
        SpiDev(str(path), 8_000_000)


def test_without_spi_the_daemon_runs_without_the_leds_and_says_why(caplog, monkeypatch):
    """open_lights for an apa102 chain on a machine without /dev/spidev6.3: None and one warning."""
    settings = LedSettings(kind="apa102", spi_device=3, spi_bus=6)
    with caplog.at_level(logging.WARNING):
        assert factory.open_lights(settings) is None
    assert any("/dev/spidev6.3 does not exist" in r.getMessage() and "dtparam=spi=on" in r.getMessage()
               for r in caplog.records)


def test_apa102_settings_refuse_pins_and_name_the_bus_keys():
    """kind = apa102 with pins: a config error naming leds and the SPI keys."""
    from agent.errors import ConfigError
    with pytest.raises(ConfigError, match="leds: .*not on pins: remove pins and set spi_bus and spi_device"):
        parse({"leds": {"kind": "apa102", "pins": {"listening": 5}}})
    s = parse({"leds": {"kind": "apa102", "spi_bus": 1, "spi_device": 2}}).settings.leds
    assert s.spi_path == "/dev/spidev1.2"


def test_a_single_led_spins_as_a_blink():
    """spin on a chain of one: on, off at the blink's pace (nothing to go round)."""
    p = pattern(LightSettings(pattern="spin", color="red"), 1, 0.1)
    assert p.frames == (((255, 0, 0),), ((0, 0, 0),)) and p.step_s == 0.5


def test_the_respeaker_page_shows_the_looks_the_code_has():
    """hardware/respeaker-2mic.md's table of states: the pattern and colour of each are the apa102
    chain's defaults, and every state (and ring) is in it."""
    import re
    from pathlib import Path
    page = Path(__file__).resolve().parent.parent / "hardware" / "respeaker-2mic.md"
    rows = re.findall(r"^\| (\w+) \| (\w+) \| (\w+) \|", page.read_text(), re.M)
    table = {state: (look, color) for state, look, color in rows if state not in ("state",)}
    code = {name: (light.pattern, light.color) for name, light in LedSettings(kind="apa102").lights().items()}
    assert table == code

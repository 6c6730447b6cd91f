"""APA102 (DotStar, SK9822) RGB LED chains on SPI: the ReSpeaker HAT's three LEDs, or a strip.

Each state's light becomes a Pattern: a loop of frames (one colour per LED) and the time between
them. Every pattern's frames are turned into bytes once, when the lights open; show() only hands
the new pattern to the player thread, which writes its first frame at once and the rest on time.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from math import ceil
from typing import Protocol

from agent.gpio.lights import TIMINGS, PatternLights
from agent.gpio.settings import LedSettings, LightSettings, parse_color
from agent.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

RGB = tuple[int, int, int]
FADE_STEP_S = 0.04   # 25 frames a second: a pulse's 1 s fade in and 1 s fade out, as gpiozero's
SPIN_TURN_S = 0.75   # one turn of the spinning dot round the chain
SPIN_STEP_S = 0.04   # ... but no faster than this per LED on a long strip
TAIL = 0.25          # the LED behind the spinning dot glows at this fraction
START_FRAME = bytes(4)


class Bus(Protocol):
    """Where frames go: agent.gpio.spi.SpiDev, or a recording bus in tests."""

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class APA102:
    """A chain of `count` APA102 LEDs on `bus` at a global brightness of 1-31."""

    def __init__(self, bus: Bus, count: int, brightness: int):
        if not 1 <= brightness <= 31:
            raise ValueError(f"APA102 brightness {brightness} is outside 1-31")
        self.bus = bus
        self.count = count
        self._head = 0xE0 | brightness
        # Zeros after the LEDs: 32 for an SK9822 to latch, then one clock edge per two LEDs for the
        # data to reach the chain's end. Zeros, not the 0xFF of some examples: an LED past `count`
        # then reads a start frame, never a full-white LED.
        self._end = bytes(4 + ceil(count / 16))

    def frame(self, colors: tuple[RGB, ...]) -> bytes:
        """The bytes that show one colour per LED: start frame, per LED 0xE0|brightness, blue,
        green, red, then the end frame."""
        if len(colors) != self.count:
            raise ValueError(f"{len(colors)} colours for a chain of {self.count} LEDs")
        body = bytearray()
        for r, g, b in colors:
            body += bytes((self._head, b, g, r))
        return START_FRAME + bytes(body) + self._end

    def close(self) -> None:
        self.bus.close()


@dataclass(frozen=True)
class Pattern:
    """A light on a chain: frames of one colour per LED, looped every step_s (0: shown once)."""

    frames: tuple[tuple[RGB, ...], ...]
    step_s: float = 0.0


def rgb255(color: str, scale: float = 1.0) -> RGB:
    """A colour name or #rrggbb as 0-255 values, times scale."""
    return tuple(round(c * 255 * scale) for c in parse_color(color))


def pattern(light: LightSettings, count: int, dim_level: float) -> Pattern:
    """The frames of one state's light on a chain of `count` LEDs."""
    kind = light.pattern
    dark = ((0, 0, 0),) * count

    def solid(scale: float) -> tuple[RGB, ...]:
        return (rgb255(light.color, scale),) * count

    if kind == "off":
        return Pattern((dark,))
    if kind in ("on", "dim"):
        return Pattern((solid(dim_level if kind == "dim" else 1.0),))
    if kind == "pulse":
        up = round(TIMINGS["pulse"][2] / FADE_STEP_S)
        down = round(TIMINGS["pulse"][3] / FADE_STEP_S)
        levels = [i / up for i in range(up)] + [1 - i / down for i in range(down)]
        return Pattern(tuple(solid(v) for v in levels), FADE_STEP_S)
    if kind == "spin" and count > 1:
        head, tail = rgb255(light.color), rgb255(light.color, TAIL if count > 2 else 0.0)
        frames = []
        for i in range(count):
            leds = [(0, 0, 0)] * count
            leds[(i - 1) % count] = tail
            leds[i] = head
            frames.append(tuple(leds))
        return Pattern(tuple(frames), max(SPIN_STEP_S, SPIN_TURN_S / count))
    on_s, off_s = TIMINGS[kind][:2]  # the blinks (and a spin on a single LED)
    return Pattern((solid(1.0),) + (dark,) * round(off_s / on_s), on_s)


def level_colors(fraction: float, count: int) -> tuple[RGB, ...]:
    """A volume level as a white bar: fraction of the chain lit, the last LED partly."""
    lit = fraction * count
    return tuple((round(255 * v),) * 3 for v in (max(0.0, min(1.0, lit - i)) for i in range(count)))


class APA102Lights(PatternLights):
    """Shows the conversation's state on an APA102 chain (the [leds] kind "apa102").

    `bus` is where frames go; by default the kernel's /dev/spidevB.D of the settings. Opening
    writes a dark frame (what a crashed run left lit goes out); close() writes one too.
    """

    def __init__(self, settings: LedSettings, *, bus: Bus | None = None):
        super().__init__(settings)
        if bus is None:
            from agent.gpio.spi import SpiDev
            bus = SpiDev(settings.spi_path, settings.spi_speed_hz)
        self.chain = APA102(bus, settings.count, settings.brightness)
        self._where = getattr(bus, "path", "the SPI bus")
        self._ratelog = RateLimitedLog(log)
        self._patterns = {name: self._frames(pattern(light, settings.count, settings.dim_level))
                          for name, light in self._lights.items()}
        self._dark_frames = self._frames(Pattern((((0, 0, 0),) * settings.count,)))
        self._wake = threading.Condition(self._lock)
        self._playing = self._dark_frames
        self._generation = 0
        self._player = threading.Thread(target=self._play, name="apa102", daemon=True)
        self._player.start()

    def _frames(self, p: Pattern) -> tuple[tuple[bytes, ...], float]:
        return tuple(self.chain.frame(f) for f in p.frames), p.step_s

    # Called with the lock held (the Condition shares it): hand over, never write here.
    def _hand_over(self, frames: tuple[tuple[bytes, ...], float]) -> None:
        self._playing = frames
        self._generation += 1
        self._wake.notify()

    def _start(self, name: str) -> None:
        self._hand_over(self._patterns[name])

    def _show_level(self, fraction: float) -> None:
        self._hand_over(((self.chain.frame(level_colors(fraction, self.chain.count)),), 0.0))

    def _dark(self) -> None:
        self._hand_over(self._dark_frames)

    def _play(self) -> None:
        """The player thread: the first frame of a new pattern at once, the next ones on time."""
        seen, step, due = -1, 0, 0.0
        frames, step_s = self._dark_frames
        while True:
            with self._wake:
                while True:
                    if self._closed:
                        return
                    if self._generation != seen:
                        seen, (frames, step_s) = self._generation, self._playing
                        step, due = 0, time.monotonic()
                        break
                    if step_s and time.monotonic() >= due:
                        break
                    self._wake.wait(max(0.0, due - time.monotonic()) if step_s else None)
            self._write(frames[step % len(frames)])
            if not step_s:
                continue  # a steady light: written once, until the next pattern
            step += 1
            due += step_s
            behind = time.monotonic() - due
            if behind > step_s:  # the machine stalled: skip ahead rather than race to catch up
                skip = int(behind / step_s)
                step, due = step + skip, due + skip * step_s

    def _write(self, frame: bytes) -> None:
        try:
            self.chain.bus.write(frame)
        except OSError as e:
            self._ratelog(logging.WARNING, "write", f"leds: writing to {self._where} failed "
                          f"({e.strerror or e}); the LEDs may show an old state")

    def _release(self) -> None:
        with self._wake:
            self._wake.notify_all()
        self._player.join(2.0)
        try:
            self._write(self._dark_frames[0][0])
        finally:
            self.chain.close()

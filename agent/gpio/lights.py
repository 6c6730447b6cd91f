"""State lights: each conversation state shown as a pattern on plain LEDs or one RGB LED.

Patterns run in gpiozero's background threads; show() starts one and returns at once, and a new
state stops the old pattern before it starts its own.
"""

from __future__ import annotations

import logging
import threading

from agent.gpio.settings import LedSettings, LightSettings, parse_color
from agent.state import State

log = logging.getLogger(__name__)

# (on_time, off_time, fade_in, fade_out) in seconds of each moving pattern.
TIMINGS = {
    "blink": (0.5, 0.5, 0.0, 0.0),
    "fast_blink": (0.1, 0.1, 0.0, 0.0),
    "slow_blink": (0.5, 1.5, 0.0, 0.0),
    "pulse": (0.0, 0.0, 1.0, 1.0),
}
_PULSE_WITHOUT_PWM = (1.0, 1.0, 0.0, 0.0)


class StateLights:
    """Shows the conversation's state (and a ringing timer) on the LEDs of [leds]."""

    def __init__(self, settings: LedSettings, *, pin_factory=None):
        from gpiozero import LED, PWMLED, RGBLED
        self._settings = settings
        self._lights = settings.lights()
        self._pwm = settings.pwm
        self._lock = threading.Lock()
        self._showing: str | None = None
        self._closed = False
        self._leds: dict = {}
        self._rgb = None
        try:
            if settings.kind == "rgb":
                p = settings.pins
                self._rgb = RGBLED(p["red"], p["green"], p["blue"], active_high=settings.active_high,
                                   pwm=settings.pwm, pin_factory=pin_factory)
            elif settings.kind == "single":
                cls = PWMLED if settings.pwm else LED
                for role, pin in settings.pins.items():
                    self._leds[role] = cls(pin, active_high=settings.active_high, pin_factory=pin_factory)
        except Exception:
            self.close()
            raise

    @property
    def showing(self) -> str | None:
        """The state (value) or 'ring' shown now; None before the first show()."""
        return self._showing

    def show(self, state: State) -> None:
        """Show a state's pattern; the same state again leaves the running pattern alone."""
        self._apply(state.value)

    def ring(self) -> None:
        """Show the timer-ringing pattern until the next show()."""
        self._apply("ring")

    def off(self) -> None:
        """All LEDs off (until the next show())."""
        with self._lock:
            if self._closed:
                return
            self._showing = None
            self._all_off()

    def _apply(self, name: str) -> None:
        with self._lock:
            if self._closed or name == self._showing:
                return
            self._showing = name
            light = self._lights[name]
            if self._rgb is not None:
                self._show_rgb(light)
            elif self._leds:
                self._show_single(light)

    def _all_off(self) -> None:
        for led in self._leds.values():
            led.off()
        if self._rgb is not None:
            self._rgb.off()

    def _pick(self, light: LightSettings):
        return self._leds.get(light.led) or next(iter(self._leds.values()))

    def _show_single(self, light: LightSettings) -> None:
        target = self._pick(light)
        for led in self._leds.values():
            if led is not target:
                led.off()
        pattern = light.pattern
        if pattern == "off":
            target.off()
        elif pattern == "on":
            target.on()
        elif pattern == "dim":
            if self._pwm:
                target.value = self._settings.dim_level
            else:
                target.off()  # a plain LED cannot dim: dark beats full brightness for 'idle'
        else:
            on, off, fade_in, fade_out = self._timing(pattern)
            if self._pwm:
                target.blink(on, off, fade_in, fade_out)
            else:
                target.blink(on, off)

    def _color(self, light: LightSettings, scale: float = 1.0) -> tuple[float, float, float]:
        rgb = parse_color(light.color)
        if self._pwm:
            return tuple(c * scale for c in rgb)
        return tuple(1.0 if c * scale >= 0.5 else 0.0 for c in rgb)  # plain pins are on or off

    def _show_rgb(self, light: LightSettings) -> None:
        pattern = light.pattern
        if pattern == "off":
            self._rgb.off()
        elif pattern in ("on", "dim"):
            scale = self._settings.dim_level if pattern == "dim" else 1.0
            self._rgb.color = self._color(light, scale)
        else:
            on, off, fade_in, fade_out = self._timing(pattern)
            self._rgb.blink(on, off, fade_in, fade_out, on_color=self._color(light),
                            off_color=(0, 0, 0))

    def _timing(self, pattern: str) -> tuple[float, float, float, float]:
        if pattern == "pulse" and not self._pwm:
            return _PULSE_WITHOUT_PWM
        return TIMINGS[pattern]

    def close(self) -> None:
        """Turn the LEDs off and release their pins; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            devices = list(self._leds.values()) + ([self._rgb] if self._rgb is not None else [])
            self._leds, self._rgb = {}, None
        for device in devices:
            try:
                device.off()
            finally:
                device.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""State lights: each conversation state shown as a pattern on plain LEDs or one RGB LED.

Patterns run in background threads; show() starts one and returns at once, and a new state stops
the old pattern before it starts its own. PatternLights is what every kind of LED shares (which
state shows what, the volume level shown for a moment, close); StateLights drives GPIO pins
through gpiozero, agent.gpio.apa102 an SPI chain.
"""

from __future__ import annotations

import logging
import threading

from agent.gpio.settings import LedSettings, LightSettings, parse_color
from agent.state import State

log = logging.getLogger(__name__)

# (on_time, off_time, fade_in, fade_out) in seconds of each moving pattern; a spin is a blink
# where there is no ring of LEDs to go round.
TIMINGS = {
    "blink": (0.5, 0.5, 0.0, 0.0),
    "fast_blink": (0.1, 0.1, 0.0, 0.0),
    "slow_blink": (0.5, 1.5, 0.0, 0.0),
    "pulse": (0.0, 0.0, 1.0, 1.0),
    "spin": (0.5, 0.5, 0.0, 0.0),
}
_PULSE_WITHOUT_PWM = (1.0, 1.0, 0.0, 0.0)
LEVEL_S = 1.5  # how long a new volume level shows before the state's pattern comes back


class PatternLights:
    """Which pattern shows when: one per state (and 'ring', and a volume level for a moment).

    A kind of LED implements _start(name), _show_level(fraction) and _dark(), called with the lock
    held and never blocking (a moving pattern runs in its own thread), and _release(), called once
    by close().
    """

    def __init__(self, settings: LedSettings):
        self._settings = settings
        self._lights = settings.lights()
        self._lock = threading.Lock()
        self._showing: str | None = None
        self._under: str | None = None  # what the level display covers, shown again after it
        self._level_timer: threading.Timer | None = None
        self._closed = False

    @property
    def showing(self) -> str | None:
        """The state (value), 'ring' or 'level' shown now; None before the first show()."""
        return self._showing

    def show(self, state: State) -> None:
        """Show a state's pattern; the same state again leaves the running pattern alone."""
        self._apply(state.value)

    def ring(self) -> None:
        """Show the timer-ringing pattern until the next show()."""
        self._apply("ring")

    def level(self, percent: int) -> None:
        """Show a volume level (0-100) for LEVEL_S, then the pattern it covered; show() ends it early."""
        with self._lock:
            if self._closed:
                return
            self._stop_level_timer()
            if self._showing != "level":
                self._under = self._showing
            self._showing = "level"
            self._show_level(max(0, min(100, percent)) / 100)
            timer = self._level_timer = threading.Timer(LEVEL_S, self._level_over)
            timer.daemon = True
            timer.start()

    def off(self) -> None:
        """All LEDs off (until the next show())."""
        with self._lock:
            if self._closed:
                return
            self._stop_level_timer()
            self._showing = None
            self._dark()

    def _apply(self, name: str) -> None:
        with self._lock:
            if self._closed or name == self._showing:
                return
            self._stop_level_timer()
            self._showing = name
            self._start(name)

    def _level_over(self) -> None:
        with self._lock:
            if self._closed or threading.current_thread() is not self._level_timer:
                return  # a state or a newer level came in meanwhile
            self._level_timer = None
            self._showing = self._under
            if self._under is None:
                self._dark()
            else:
                self._start(self._under)

    def _stop_level_timer(self) -> None:
        if self._level_timer is not None:
            self._level_timer.cancel()
            self._level_timer = None

    def close(self) -> None:
        """Turn the LEDs off and release them; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_level_timer()
        self._release()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what a kind of LED does -------------------------------------------------------------

    def _start(self, name: str) -> None:
        """Show the light of `name` (a state's value or 'ring')."""
        raise NotImplementedError

    def _show_level(self, fraction: float) -> None:
        raise NotImplementedError

    def _dark(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


class StateLights(PatternLights):
    """Shows the conversation's state (and a ringing timer) on the GPIO LEDs of [leds]."""

    def __init__(self, settings: LedSettings, *, pin_factory=None):
        from gpiozero import LED, PWMLED, RGBLED
        super().__init__(settings)
        self._pwm = settings.pwm
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

    def _start(self, name: str) -> None:
        light = self._lights[name]
        if self._rgb is not None:
            self._show_rgb(light)
        elif self._leds:
            self._show_single(light)

    def _dark(self) -> None:
        for led in self._leds.values():
            led.off()
        if self._rgb is not None:
            self._rgb.off()

    def _show_level(self, fraction: float) -> None:
        # The listening LED (or white on an RGB LED) at the level's brightness; lit at all without PWM.
        value = fraction if self._pwm else float(fraction > 0)
        if self._rgb is not None:
            self._rgb.color = (value, value, value)
        elif self._leds:
            target = self._pick(self._lights["listening"])
            for led in self._leds.values():
                if led is not target:
                    led.off()
            target.value = value

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

    def _release(self) -> None:
        with self._lock:
            devices = list(self._leds.values()) + ([self._rgb] if self._rgb is not None else [])
            self._leds, self._rgb = {}, None
        for device in devices:
            try:
                device.off()
            finally:
                device.close()

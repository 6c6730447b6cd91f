"""Settings of buttons and LEDs."""

from typing import Literal

from pydantic import Field

from agent.section import Section


class ButtonSettings(Section):
    """[button]: push-to-talk and mute buttons on BCM pins."""

    pin: int | None = None
    """BCM pin of the talk button (wired to ground, internal pull-up); unset: no button."""
    mode: Literal["tap", "hold"] = "tap"
    """tap: a press starts a turn the server ends; hold: talk while held."""
    bounce_ms: int = Field(30, ge=0, le=1000)
    """Debounce time in ms."""
    long_press_s: float = Field(2.0, gt=0, le=30)
    """Holding the talk button this long toggles mute."""
    mute_pin: int | None = None
    """BCM pin of a mute switch (closed = muted); unset: none."""


class LedSettings(Section):
    """[leds]: state lights."""

    kind: Literal["none", "single", "rgb"] = "none"
    """none, single (one LED per state colour) or rgb (one RGB LED)."""
    pins: dict[str, int] = {}
    """single: role -> BCM pin (roles: listening, speaking, error); rgb: red, green, blue."""
    active_high: bool = True
    """False when the LED is wired to 3.3 V and lit by pulling the pin low."""
    pwm: bool = True
    """Use PWM (dimming and pulsing); false for plain on/off."""

"""Settings of buttons and LEDs."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.section import Section
from agent.state import State

Pattern = Literal["off", "dim", "on", "blink", "fast_blink", "slow_blink", "pulse"]

# Colour names an RGB LED understands, as (red, green, blue) 0..1; '#rrggbb' works too.
COLORS = {
    "off": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0), "cyan": (0.0, 1.0, 1.0),
    "magenta": (1.0, 0.0, 1.0), "yellow": (1.0, 1.0, 0.0), "orange": (1.0, 0.4, 0.0),
    "purple": (0.5, 0.0, 1.0),
}
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
# What a light can show: every conversation state, and 'ring' for a timer going off.
LIGHT_NAMES = tuple(s.value for s in State) + ("ring",)


def parse_color(text: str) -> tuple[float, float, float]:
    """(red, green, blue) 0..1 of a colour name or '#rrggbb'."""
    if text in COLORS:
        return COLORS[text]
    if _HEX.match(text):
        return tuple(int(text[i:i + 2], 16) / 255 for i in (1, 3, 5))
    raise ValueError(f"unknown colour {text!r}: use #rrggbb or one of {', '.join(COLORS)}")


class ButtonSettings(Section):
    """[button]: push-to-talk and mute buttons on BCM pins."""

    pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of the talk button (wired to ground, internal pull-up); unset: no button."""
    mode: Literal["tap", "hold"] = "tap"
    """tap: a press starts a turn the server ends; hold: talk while held."""
    bounce_ms: int = Field(30, ge=0, le=1000)
    """Debounce time in ms (0: none)."""
    long_press_s: float = Field(2.0, gt=0, le=30)
    """Holding the talk button this long toggles mute."""
    mute_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of a mute switch (closed = muted, wired to ground, internal pull-up); unset: none."""

    @model_validator(mode="after")
    def _two_pins(self):
        if self.pin is not None and self.pin == self.mute_pin:
            raise ValueError(f"pin and mute_pin are both BCM {self.pin}; give the mute switch its own pin")
        return self


class LightSettings(Section):
    """[leds.states.<state>]: how one state (or 'ring') shows."""

    pattern: Pattern
    """off, dim, on, blink, fast_blink, slow_blink or pulse (without PWM: dim is off, pulse blinks)."""
    color: str = "white"
    """rgb: a colour name (white, red, green, blue, cyan, magenta, yellow, orange, purple) or #rrggbb."""
    led: str = ""
    """single: which LED (a role in leds.pins); empty or not wired: the first LED in leds.pins."""

    @field_validator("color")
    @classmethod
    def _color(cls, v: str) -> str:
        parse_color(v)
        return v


def _light(pattern: str, color: str, led: str) -> LightSettings:
    return LightSettings(pattern=pattern, color=color, led=led)


# Defaults: idle dark, listening on, thinking blinks, speaking pulses, muted steady red,
# error blinks fast, reconnecting blinks slowly, a ringing timer blinks fast in yellow.
DEFAULT_LIGHTS: dict[str, LightSettings] = {
    "idle": _light("off", "off", "listening"),
    "connecting": _light("fast_blink", "blue", "listening"),
    "listening": _light("on", "blue", "listening"),
    "thinking": _light("blink", "cyan", "listening"),
    "speaking": _light("pulse", "green", "speaking"),
    "follow_up": _light("dim", "blue", "listening"),
    "reconnecting": _light("slow_blink", "orange", "error"),
    "muted": _light("on", "red", "error"),
    "error": _light("fast_blink", "red", "error"),
    "ring": _light("fast_blink", "yellow", "speaking"),
}


class LedSettings(Section):
    """[leds]: state lights."""

    kind: Literal["none", "single", "rgb"] = "none"
    """none, single (one or more plain LEDs, each with a role) or rgb (one RGB LED)."""
    pins: dict[str, int] = {}
    """single: role -> BCM pin (roles the defaults use: listening, speaking, error); rgb: red, green, blue."""
    active_high: bool = True
    """False when the LED is wired to 3.3 V and lit by pulling the pin low (common-anode RGB)."""
    pwm: bool = True
    """Use PWM (dimming and pulsing); false for plain on/off."""
    dim_level: float = Field(0.1, gt=0, le=1)
    """Brightness of the 'dim' pattern (0..1)."""
    states: dict[str, LightSettings] = {}
    """Per state (idle, connecting, listening, thinking, speaking, follow_up, reconnecting, muted, error,
    ring): a pattern, colour and LED replacing the default for that state."""

    @field_validator("pins")
    @classmethod
    def _bcm(cls, v: dict[str, int]) -> dict[str, int]:
        for role, pin in v.items():
            if not 0 <= pin <= 27:
                raise ValueError(f"{role} = {pin} is not a BCM GPIO pin (0..27)")
        pins = list(v.values())
        if len(set(pins)) != len(pins):
            raise ValueError("two LEDs share a pin; give each its own")
        return v

    @field_validator("states")
    @classmethod
    def _known_states(cls, v: dict[str, LightSettings]) -> dict[str, LightSettings]:
        unknown = sorted(set(v) - set(LIGHT_NAMES))
        if unknown:
            raise ValueError(f"unknown state {unknown[0]!r}: use {', '.join(LIGHT_NAMES)}")
        return v

    @model_validator(mode="after")
    def _pins_fit_kind(self):
        if self.kind == "rgb" and set(self.pins) != {"red", "green", "blue"}:
            raise ValueError("an rgb LED needs pins red, green and blue "
                             "(e.g. {red = 17, green = 27, blue = 22})")
        if self.kind == "single" and not self.pins:
            raise ValueError("single LEDs need at least one pin (e.g. pins = {listening = 17})")
        return self

    def lights(self) -> dict[str, LightSettings]:
        """Every state's light: the defaults with the configured ones over them."""
        return {**DEFAULT_LIGHTS, **self.states}

"""Settings of buttons and LEDs."""

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.section import Section
from agent.state import State

Pattern = Literal["off", "dim", "on", "blink", "fast_blink", "slow_blink", "pulse", "spin"]

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
    volume_up_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of a volume-up button (wired to ground; held, it repeats); unset: none."""
    volume_down_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of a volume-down button (wired to ground; held, it repeats); unset: none."""
    volume_step: int = Field(5, ge=1, le=50)
    """Volume change in percent per button press or encoder detent."""
    encoder_a_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of a rotary encoder's A (CLK) contact; with encoder_b_pin, turning sets the volume."""
    encoder_b_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of the encoder's B (DT) contact; clockwise (A before B) turns the volume up."""
    encoder_switch_pin: int | None = Field(None, ge=0, le=27)
    """BCM pin of the encoder's push switch (SW, wired to ground); unset: none."""
    encoder_switch: Literal["mute", "talk"] = "mute"
    """What pushing the encoder does: mute (toggles mute) or talk (the same as the talk button)."""

    @model_validator(mode="after")
    def _distinct_pins(self):
        used: dict[int, str] = {}
        for key in ("pin", "mute_pin", "volume_up_pin", "volume_down_pin", "encoder_a_pin",
                    "encoder_b_pin", "encoder_switch_pin"):
            pin = getattr(self, key)
            if pin is None:
                continue
            if pin in used:
                raise ValueError(f"{used[pin]} and {key} are both BCM {pin}; give each its own pin")
            used[pin] = key
        if (self.encoder_a_pin is None) != (self.encoder_b_pin is None):
            raise ValueError("a rotary encoder needs both encoder_a_pin and encoder_b_pin")
        return self

    def pins(self) -> dict[str, int]:
        """Every configured pin by its key (pin, mute_pin, volume_up_pin, ...)."""
        return {name: value for name, value in self.model_dump().items()
                if name.endswith("pin") and value is not None}


class LightSettings(Section):
    """[leds.states.<state>]: how one state (or 'ring') shows."""

    pattern: Pattern
    """off, dim, on, blink, fast_blink, slow_blink, pulse or spin (a dot going round an apa102
    chain; plain and RGB LEDs blink); without PWM dim is off and pulse blinks."""
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
# error blinks fast, reconnecting blinks slowly, a ringing timer blinks fast in yellow. Offline
# (the service unreachable, the device answers) glows dim orange: calm, but not "all is well".
DEFAULT_LIGHTS: dict[str, LightSettings] = {
    "idle": _light("off", "off", "listening"),
    "offline": _light("dim", "orange", "error"),
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
# A chain of LEDs (apa102) can show motion: a dot goes round while it waits for the server.
CHAIN_LIGHTS: dict[str, LightSettings] = {
    "connecting": _light("spin", "blue", "listening"),
    "thinking": _light("spin", "cyan", "listening"),
}


class LedSettings(Section):
    """[leds]: state lights."""

    kind: Literal["none", "single", "rgb", "apa102"] = "none"
    """none, single (plain LEDs, each with a role), rgb (one RGB LED on three pins) or apa102 (a
    chain of APA102/DotStar/SK9822 RGB LEDs on the SPI bus, e.g. the ReSpeaker HAT's three)."""
    pins: dict[str, int] = {}
    """single: role -> BCM pin (roles the defaults use: listening, speaking, error); rgb: red, green, blue."""
    active_high: bool = True
    """False when the LED is wired to 3.3 V and lit by pulling the pin low (common-anode RGB)."""
    pwm: bool = True
    """Use PWM (dimming and pulsing); false for plain on/off."""
    dim_level: float = Field(0.1, gt=0, le=1)
    """Brightness of the 'dim' pattern (0..1)."""
    count: int = Field(3, ge=1, le=256)
    """apa102: LEDs in the chain (the ReSpeaker 2-Mic HAT has 3)."""
    brightness: int = Field(8, ge=1, le=31)
    """apa102: the chain's global brightness, 1-31 (the chip's 5-bit current level; 31 is glaring)."""
    spi_bus: int = Field(0, ge=0, le=6)
    """apa102: SPI bus B of /dev/spidevB.D (0 is the header's SPI0: MOSI BCM 10, SCLK BCM 11)."""
    spi_device: int = Field(0, ge=0, le=3)
    """apa102: chip-select D of /dev/spidevB.D (APA102 ignores it; either one of the bus works)."""
    spi_speed_hz: int = Field(8_000_000, ge=100_000, le=32_000_000)
    """apa102: SPI clock in Hz (lower it for long wires)."""
    states: dict[str, LightSettings] = {}
    """Per state (idle, offline, connecting, listening, thinking, speaking, follow_up, reconnecting,
    muted, error, ring): a pattern, colour and LED replacing the default for that state."""

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
        if self.kind == "apa102" and self.pins:
            raise ValueError("apa102 LEDs are on the SPI bus, not on pins: remove pins and set "
                             "spi_bus and spi_device")
        return self

    @property
    def spi_path(self) -> str:
        """apa102: the kernel's SPI device file, /dev/spidevB.D."""
        return f"/dev/spidev{self.spi_bus}.{self.spi_device}"

    def lights(self) -> dict[str, LightSettings]:
        """Every state's light: the defaults (with motion on an apa102 chain), the configured over them."""
        chain = CHAIN_LIGHTS if self.kind == "apa102" else {}
        return {**DEFAULT_LIGHTS, **chain, **self.states}

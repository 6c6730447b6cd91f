"""Open the buttons and LEDs of the config, or nothing (with one log line) where there is no GPIO."""

from __future__ import annotations

import logging
import warnings
from typing import Callable

from agent.gpio.buttons import ButtonEvent, Buttons
from agent.errors import HardwareError
from agent.gpio.lights import PatternLights, StateLights
from agent.gpio.settings import ButtonSettings, LedSettings

log = logging.getLogger(__name__)

_told_no_gpio = False


def pin_factory_available() -> bool:
    """True when gpiozero has a pin factory (a Pi's GPIO, or a mock); logs once per process if not."""
    global _told_no_gpio
    try:
        from gpiozero import Device
        from gpiozero.exc import BadPinFactory
    except ImportError as e:
        reason = f"gpiozero is not installed ({e}); pip install 'mira-agent[gpio]'"
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one PinFactoryFallback warning per backend tried
                Device.ensure_pin_factory()
            return True
        except BadPinFactory:
            reason = "gpiozero found no pin factory"
        except Exception as e:  # a backend that is present but broken (no /dev/gpiochip access, ...)
            reason = f"gpiozero could not start: {e}"
    if not _told_no_gpio:
        _told_no_gpio = True
        log.warning("no GPIO on this machine (%s); running without buttons and LEDs", reason)
    return False


def _open(what: str, key: str, make: Callable):
    try:
        return make()
    except Exception as e:  # pin busy, no permission, PWM unsupported: run without the device
        log.warning("%s: cannot use its GPIO pins (%s: %s); running without the %s", key,
                    type(e).__name__, e, what)
        return None


def open_buttons(settings: ButtonSettings, post: Callable[[ButtonEvent], None],
                 on_volume: Callable[[int], None] | None = None) -> Buttons | None:
    """The configured buttons (talk, mute, volume, encoder), or None when none is set or there is
    no GPIO. on_volume gets +1 or -1 per volume press or encoder detent (see Buttons)."""
    if not settings.pins():
        return None
    if not pin_factory_available():
        return None
    return _open("buttons", "button", lambda: Buttons(settings, post, on_volume=on_volume))


def open_lights(settings: LedSettings) -> PatternLights | None:
    """The configured state lights, or None when leds.kind is none or they cannot be opened
    (no GPIO for pin LEDs, no SPI device for an apa102 chain: one warning names the fix)."""
    if settings.kind == "none":
        return None
    if settings.kind == "apa102":
        from agent.gpio.apa102 import APA102Lights
        try:
            return APA102Lights(settings)
        except HardwareError as e:
            log.warning("leds: %s; running without the LEDs", e)
            return None
    if not pin_factory_available():
        return None
    return _open("LEDs", "leds", lambda: StateLights(settings))

"""Buttons and state LEDs on gpiozero; without GPIO the daemon runs without them."""

from agent.gpio.buttons import ButtonAction, ButtonEvent, Buttons
from agent.gpio.factory import open_buttons, open_lights, pin_factory_available
from agent.gpio.lights import StateLights

__all__ = ["ButtonAction", "ButtonEvent", "Buttons", "StateLights", "open_buttons", "open_lights",
           "pin_factory_available"]

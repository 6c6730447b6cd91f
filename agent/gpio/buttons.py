"""The talk button, the mute switch and the volume controls: gpiozero callbacks that only post."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from agent.gpio.settings import ButtonSettings

log = logging.getLogger(__name__)


class ButtonAction(str, Enum):
    """What happened to a button."""

    PRESSED = "pressed"          # talk button went down
    RELEASED = "released"        # talk button came up
    LONG_PRESS = "long_press"    # talk button held for long_press_s: the conversation toggles mute
    MUTE_TOGGLE = "mute_toggle"  # the encoder pushed in mute mode: the conversation toggles mute
    MUTE_ON = "mute_on"          # mute switch closed (also posted at start if it already is)
    MUTE_OFF = "mute_off"        # mute switch opened


@dataclass(frozen=True)
class ButtonEvent:
    """One button event, posted to the conversation loop from gpiozero's thread."""

    action: ButtonAction
    at: float
    """time.monotonic() when it happened."""
    held_s: float = 0.0
    """LONG_PRESS and RELEASED: how long the talk button had been held."""
    long: bool = False
    """RELEASED: a LONG_PRESS was posted during this hold (so the release ends no turn)."""


VOLUME_REPEAT_S = 0.3  # a held volume button steps again this often


class Buttons:
    """The talk button (pull-up, debounced, long press), an optional mute switch, volume up and
    down buttons and a rotary encoder with its push switch.

    `post` gets ButtonEvents and `on_volume` a step (+1 louder, -1 quieter); both are called on
    gpiozero's threads and must not block (e.g. queue.put_nowait, Conversation.call_soon).
    Without on_volume the volume buttons and the encoder are left unopened.
    """

    def __init__(self, settings: ButtonSettings, post: Callable[[ButtonEvent], None], *,
                 on_volume: Callable[[int], None] | None = None, pin_factory=None):
        from gpiozero import Button, RotaryEncoder
        self._post = post
        self._on_volume = on_volume
        self._lock = threading.Lock()
        self._pressed_at: float | None = None
        self._long = False
        self._closed = False
        self.talk = self.mute = self.volume_up = self.volume_down = None
        self.encoder = self.encoder_switch = None
        bounce = settings.bounce_ms / 1000 or None
        try:
            if settings.pin is not None:
                self.talk = Button(settings.pin, pull_up=True, bounce_time=bounce,
                                   hold_time=settings.long_press_s, pin_factory=pin_factory)
                self.talk.when_pressed = self._pressed
                self.talk.when_released = self._released
                self.talk.when_held = self._held
            if settings.mute_pin is not None:
                self.mute = Button(settings.mute_pin, pull_up=True, bounce_time=bounce,
                                   pin_factory=pin_factory)
                self.mute.when_pressed = self._mute_on
                self.mute.when_released = self._mute_off
            if on_volume is not None:
                for name, pin, step in (("volume_up", settings.volume_up_pin, +1),
                                        ("volume_down", settings.volume_down_pin, -1)):
                    if pin is not None:
                        button = Button(pin, pull_up=True, bounce_time=bounce,
                                        hold_time=VOLUME_REPEAT_S, hold_repeat=True,
                                        pin_factory=pin_factory)
                        button.when_pressed = button.when_held = self._stepper(step)
                        setattr(self, name, button)
                if settings.encoder_a_pin is not None:
                    self.encoder = RotaryEncoder(settings.encoder_a_pin, settings.encoder_b_pin,
                                                 max_steps=0, pin_factory=pin_factory)
                    self.encoder.when_rotated_clockwise = self._stepper(+1)
                    self.encoder.when_rotated_counter_clockwise = self._stepper(-1)
            if settings.encoder_switch_pin is not None:
                self.encoder_switch = Button(settings.encoder_switch_pin, pull_up=True,
                                             bounce_time=bounce, hold_time=settings.long_press_s,
                                             pin_factory=pin_factory)
                if settings.encoder_switch == "talk":
                    self.encoder_switch.when_pressed = self._pressed
                    self.encoder_switch.when_released = self._released
                    self.encoder_switch.when_held = self._held
                else:
                    self.encoder_switch.when_pressed = self._mute_toggle
        except Exception:
            self.close()
            raise
        if self.mute is not None and self.mute.is_pressed:
            self._mute_on()

    @property
    def muted(self) -> bool:
        """The mute switch is closed (False without a switch)."""
        return bool(self.mute is not None and not self._closed and self.mute.is_pressed)

    @property
    def pressed(self) -> bool:
        """The talk button is down."""
        return bool(self.talk is not None and not self._closed and self.talk.is_pressed)

    def _send(self, action: ButtonAction, at: float, held_s: float = 0.0, long: bool = False) -> None:
        try:
            self._post(ButtonEvent(action, at, held_s, long))
        except Exception as e:  # never let the loop's queue break gpiozero's thread
            log.error("button event %s was lost: %s", action.value, e)

    def _pressed(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._pressed_at, self._long = now, False
        self._send(ButtonAction.PRESSED, now)

    def _held(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._pressed_at is None or self._long:
                return
            self._long = True
            held = now - self._pressed_at
        self._send(ButtonAction.LONG_PRESS, now, held)

    def _released(self) -> None:
        now = time.monotonic()
        with self._lock:
            held = now - self._pressed_at if self._pressed_at is not None else 0.0
            long, self._pressed_at, self._long = self._long, None, False
        self._send(ButtonAction.RELEASED, now, held, long)

    def _stepper(self, step: int) -> Callable[[], None]:
        def turned() -> None:
            try:
                self._on_volume(step)
            except Exception as e:  # never let the loop's queue break gpiozero's thread
                log.error("volume step %+d was lost: %s", step, e)
        return turned

    def _mute_toggle(self) -> None:
        self._send(ButtonAction.MUTE_TOGGLE, time.monotonic())

    def _mute_on(self) -> None:
        self._send(ButtonAction.MUTE_ON, time.monotonic())

    def _mute_off(self) -> None:
        self._send(ButtonAction.MUTE_OFF, time.monotonic())

    def close(self) -> None:
        """Release the pins; safe to call twice."""
        self._closed = True
        for device in (self.talk, self.mute, self.volume_up, self.volume_down, self.encoder,
                       self.encoder_switch):
            if device is not None:
                device.close()
        self.talk = self.mute = self.volume_up = self.volume_down = None
        self.encoder = self.encoder_switch = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""The talk button and mute switch on gpiozero's mock pins, and running without GPIO."""

import logging
import queue
import time

import pytest
from gpiozero import LED, Device
from gpiozero.pins.mock import MockPWMPin

from agent.config import parse
from agent.gpio import ButtonAction, Buttons, open_buttons, open_lights, pin_factory_available
from agent.gpio import factory as gpio_factory
from agent.gpio.settings import ButtonSettings, LedSettings

TALK, MUTE = 17, 27


@pytest.fixture
def events():
    return queue.Queue()


def drain(q: queue.Queue, wait: float = 0.0) -> list:
    if wait:
        time.sleep(wait)
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def wait_for(q: queue.Queue, timeout: float = 2.0):
    return q.get(timeout=timeout)


def test_a_press_and_release_post_two_events_with_the_hold_time(pins, events):
    """drive_low presses the pull-up button (PRESSED); drive_high releases it (RELEASED with held_s)."""
    with Buttons(ButtonSettings(pin=TALK), events.put_nowait):
        pin = pins.pin(TALK)
        pin.drive_low()
        time.sleep(0.05)
        pin.drive_high()
        got = drain(events)
    assert [e.action for e in got] == [ButtonAction.PRESSED, ButtonAction.RELEASED]
    assert 0.04 < got[1].held_s < 2 and not got[1].long
    assert got[0].at <= got[1].at


def test_holding_past_long_press_s_posts_one_long_press(pins, events):
    """Held for long_press_s: one LONG_PRESS while held; the release then says it was a long one."""
    with Buttons(ButtonSettings(pin=TALK, long_press_s=0.2), events.put_nowait):
        pin = pins.pin(TALK)
        pin.drive_low()
        assert wait_for(events).action == ButtonAction.PRESSED
        long_press = wait_for(events)
        assert long_press.action == ButtonAction.LONG_PRESS and long_press.held_s >= 0.19
        time.sleep(0.3)  # still held: no second LONG_PRESS
        pin.drive_high()
        got = drain(events)
    assert [e.action for e in got] == [ButtonAction.RELEASED]
    assert got[0].long and got[0].held_s >= 0.45


def test_a_short_press_after_a_long_one_is_short_again(pins, events):
    """The long flag belongs to one hold only."""
    with Buttons(ButtonSettings(pin=TALK, long_press_s=0.1), events.put_nowait):
        pin = pins.pin(TALK)
        pin.drive_low()
        time.sleep(0.25)
        pin.drive_high()
        pin.drive_low()
        pin.drive_high()
        got = drain(events)
    assert [e.action.value for e in got] == ["pressed", "long_press", "released", "pressed", "released"]
    assert got[2].long and not got[4].long


def test_the_mute_switch_posts_mute_on_and_off(pins, events):
    """Closing the mute switch posts MUTE_ON, opening it MUTE_OFF; `muted` follows it."""
    with Buttons(ButtonSettings(pin=TALK, mute_pin=MUTE), events.put_nowait) as buttons:
        assert drain(events) == [] and not buttons.muted
        pins.pin(MUTE).drive_low()
        assert buttons.muted
        pins.pin(MUTE).drive_high()
        assert not buttons.muted
        got = drain(events)
    assert [e.action for e in got] == [ButtonAction.MUTE_ON, ButtonAction.MUTE_OFF]


class ClosedSwitchPin(MockPWMPin):
    """A pin wired to ground through a closed switch: the internal pull-up cannot raise it."""

    def _set_pull(self, value):
        super()._set_pull(value)
        self.drive_low()


def test_a_mute_switch_closed_at_start_posts_mute_on_at_once(pins, events):
    """The daemon starts muted when the switch is already closed."""
    pins.pin(MUTE, pin_class=ClosedSwitchPin)
    with Buttons(ButtonSettings(mute_pin=MUTE), events.put_nowait) as buttons:
        assert [e.action for e in drain(events)] == [ButtonAction.MUTE_ON]
        assert buttons.talk is None and buttons.muted


def test_debounce_and_pull_up_reach_the_pin(pins, events):
    """bounce_ms becomes the pin's bounce time; the button pulls up (idle high, pressed low)."""
    with Buttons(ButtonSettings(pin=TALK, bounce_ms=30), events.put_nowait) as buttons:
        assert pins.pin(TALK).bounce == pytest.approx(0.03)
        assert pins.pin(TALK).pull == "up" and not buttons.pressed
    with Buttons(ButtonSettings(pin=TALK, bounce_ms=0), events.put_nowait):
        assert pins.pin(TALK).bounce is None


def test_a_failing_post_is_logged_and_later_events_still_arrive(pins, events, caplog):
    """An exception from post() is logged as a lost event; gpiozero's thread and later events survive."""
    calls = []

    def post(event):
        calls.append(event.action)
        if len(calls) == 1:
            raise queue.Full()

    with Buttons(ButtonSettings(pin=TALK), post):
        pins.pin(TALK).drive_low()
        pins.pin(TALK).drive_high()
    assert calls == [ButtonAction.PRESSED, ButtonAction.RELEASED]
    assert "button event pressed was lost" in caplog.text


def test_close_is_idempotent_and_frees_the_pins(pins, events):
    """close() twice is fine, and the pins can be used again afterwards."""
    buttons = Buttons(ButtonSettings(pin=TALK, mute_pin=MUTE), events.put_nowait)
    buttons.close()
    buttons.close()
    assert not buttons.pressed and not buttons.muted
    LED(TALK).close()  # would raise GPIOPinInUse if the button still held it


def test_open_buttons_gives_none_when_no_pin_is_configured(pins, events):
    """No talk pin and no mute pin: nothing to open."""
    assert open_buttons(ButtonSettings(), events.put_nowait) is None


def test_open_buttons_runs_without_a_pin_that_is_in_use(pins, events, caplog):
    """A pin already taken: None and one warning naming [button], never an exception."""
    with LED(TALK):
        assert open_buttons(ButtonSettings(pin=TALK), events.put_nowait) is None
    (record,) = caplog.records
    assert record.getMessage().startswith("button: cannot use its GPIO pins (GPIOPinInUse")
    assert record.getMessage().endswith("running without the buttons")


def test_without_gpio_buttons_and_leds_are_off_with_one_log_line(monkeypatch, events, caplog):
    """No pin factory (this machine): open_* give None, and only one line is logged for both."""
    monkeypatch.setattr(Device, "pin_factory", None)
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(gpio_factory, "_told_no_gpio", False)
    caplog.set_level(logging.INFO)
    settings = parse({"button": {"pin": TALK}, "leds": {"kind": "single", "pins": {"listening": 5}}}).settings
    assert open_buttons(settings.button, events.put_nowait) is None
    assert open_lights(settings.leds) is None
    assert not pin_factory_available()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("agent.")]
    assert messages == ["no GPIO on this machine (gpiozero found no pin factory); "
                        "running without buttons and LEDs"]


def test_open_lights_gives_none_for_kind_none(pins):
    """leds.kind = none: no lights, no log."""
    assert open_lights(LedSettings()) is None


def test_the_factories_open_real_devices_on_a_pin_factory(pins, events):
    """With a pin factory, open_buttons and open_lights give working devices."""
    buttons = open_buttons(ButtonSettings(pin=TALK), events.put_nowait)
    lights = open_lights(LedSettings(kind="single", pins={"listening": 5}))
    try:
        pins.pin(TALK).drive_low()
        assert wait_for(events).action == ButtonAction.PRESSED
        assert lights is not None
    finally:
        buttons.close()
        lights.close()

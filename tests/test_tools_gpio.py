"""The gpio action on gpiozero MockFactory pins: set, toggle, pulse, wiring polarity, missing GPIO."""

import json
import warnings

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from agent.config import parse
from agent.tools.toolbox import Toolbox


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


def toolbox(factory, *tools: dict) -> Toolbox:
    config = parse({"tools": list(tools)})
    return Toolbox(config.settings.tools, None, config.resolve, builtins=(), pin_factory=factory)


LAMP = {"name": "lamp", "parameters": {"type": "object", "required": ["on"],
                                       "properties": {"on": {"type": ["boolean", "string"]}}},
        "action": {"kind": "gpio", "pin": 17, "operation": "set", "value_arg": "on"}}


def test_set_drives_the_pin_from_the_argument(factory):
    """set: true/"on" drives the pin high, false/"off" low; the output reports the state."""
    with toolbox(factory, LAMP) as tb:
        assert json.loads(tb.run("lamp", '{"on": true}').output) == {"pin": 17, "on": True}
        assert factory.pin(17).state is True
        assert json.loads(tb.run("lamp", '{"on": "off"}').output) == {"pin": 17, "on": False}
        assert factory.pin(17).state is False


def test_set_refuses_a_value_that_is_not_on_or_off(factory):
    """A string that is neither on nor off leaves the pin alone and says why."""
    with toolbox(factory, LAMP) as tb:
        tb.run("lamp", '{"on": true}')
        result = tb.run("lamp", '{"on": "; rm -rf /"}')
        assert factory.pin(17).state is True
    assert not result.ok and "must be on or off" in result.output


def test_set_refuses_wrong_types_before_touching_the_pin(factory):
    """A number where the schema wants boolean or string is refused; the pin never opens."""
    with toolbox(factory, LAMP) as tb:
        result = tb.run("lamp", '{"on": 1}')
        assert not result.ok and "invalid arguments" in result.output
        assert factory.pin(17).states == [factory.pin(17).states[0]]  # no change recorded


def test_active_low_inverts_the_pin(factory):
    """active_high = false: on is a low pin (relay boards)."""
    relay = {**LAMP, "action": {**LAMP["action"], "active_high": False}}
    with toolbox(factory, relay) as tb:
        tb.run("lamp", '{"on": true}')
        assert factory.pin(17).state is False
        tb.run("lamp", '{"on": false}')
        assert factory.pin(17).state is True


def test_toggle_flips_the_pin(factory):
    """toggle flips the pin on each call."""
    tool = {"name": "fan", "action": {"kind": "gpio", "pin": 22, "operation": "toggle"}}
    with toolbox(factory, tool) as tb:
        assert json.loads(tb.run("fan", "{}").output)["on"] is True
        assert json.loads(tb.run("fan", "{}").output)["on"] is False
        assert factory.pin(22).state is False


def test_pulse_goes_high_for_pulse_s_then_low(factory):
    """pulse: the pin is high for about pulse_s, then low (a door opener)."""
    tool = {"name": "door", "action": {"kind": "gpio", "pin": 5, "operation": "pulse", "pulse_s": 0.1}}
    with toolbox(factory, tool) as tb:
        result = tb.run("door", "")
        states = [s.state for s in factory.pin(5).states]
        times = [s.timestamp for s in factory.pin(5).states]
    assert result.ok and json.loads(result.output) == {"pin": 5, "pulsed_s": 0.1}
    assert states[-2:] == [True, False]
    assert 0.09 <= times[-1] - times[-2] < 0.5


def test_pin_in_use_is_an_error_output(factory):
    """Two tools on one pin: the second reports the conflict instead of crashing."""
    other = {"name": "other", "action": {"kind": "gpio", "pin": 17}}
    with toolbox(factory, LAMP, other) as tb:
        assert tb.run("lamp", '{"on": true}').ok
        result = tb.run("other", "{}")
    assert not result.ok and "GPIO pin 17 cannot be opened" in result.output


def test_missing_gpio_is_an_error_output_not_a_crash(monkeypatch):
    """With no GPIO hardware and no mock factory, the call fails with an error the model can read."""
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.setattr(Device, "pin_factory", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            Device._default_pin_factory()
        except Exception:
            pass
        else:
            pytest.skip("this machine has GPIO")
    with toolbox(None, LAMP) as tb:
        result = tb.run("lamp", '{"on": true}')
    assert not result.ok and "GPIO pin 17 cannot be opened" in result.output
    assert "BadPinFactory" in result.output


def test_close_releases_the_pins_and_is_idempotent(factory):
    """After close() the pin can be claimed again; a second close() is harmless."""
    tb = toolbox(factory, LAMP)
    tb.run("lamp", '{"on": true}')
    tb.close()
    tb.close()
    with toolbox(factory, LAMP) as again:
        assert again.run("lamp", '{"on": true}').ok

"""State lights on gpiozero's mock PWM pins: patterns per state, RGB colours, interruption."""

import time

import pytest

from agent.config import parse
from agent.gpio import StateLights
from agent.gpio.settings import LedSettings
from agent.state import State

LISTEN, SPEAK, ERR = 5, 6, 13
RED, GREEN, BLUE = 17, 27, 22


def single(**kw) -> LedSettings:
    return LedSettings(kind="single", pins={"listening": LISTEN, "speaking": SPEAK, "error": ERR}, **kw)


def rgb(**kw) -> LedSettings:
    return LedSettings(kind="rgb", pins={"red": RED, "green": GREEN, "blue": BLUE}, **kw)


def values(pins, *numbers) -> tuple:
    return tuple(round(pins.pin(n).state, 3) for n in numbers)


def settle(pins, numbers, expected, timeout=1.0) -> tuple:
    """Wait (bounded) for a background pattern's first write; the values then."""
    deadline = time.monotonic() + timeout
    while values(pins, *numbers) != expected and time.monotonic() < deadline:
        time.sleep(0.005)
    return values(pins, *numbers)


def transitions(pin, since: int = 0) -> list[float]:
    return [round(s.state, 3) for s in pin.states[since:]]


def test_single_leds_show_each_steady_state_on_its_role(pins):
    """idle dark, listening on, follow-up dim, muted = the error LED steady; other LEDs off."""
    with StateLights(single()) as lights:
        leds = (LISTEN, SPEAK, ERR)
        lights.show(State.IDLE)
        assert values(pins, *leds) == (0, 0, 0)
        lights.show(State.LISTENING)
        assert values(pins, *leds) == (1, 0, 0)
        lights.show(State.FOLLOW_UP)
        assert values(pins, *leds) == (0.1, 0, 0)
        lights.show(State.MUTED)
        assert values(pins, *leds) == (0, 0, 1)
        assert lights.showing == "muted"


@pytest.mark.slow
def test_thinking_blinks_the_listening_led_at_half_a_second(pins):
    """THINKING: on 0.5 s, off 0.5 s, in a background thread (show returns at once)."""
    with StateLights(single()) as lights:
        pin = pins.pin(LISTEN)
        start = len(pin.states)
        t0 = time.monotonic()
        lights.show(State.THINKING)
        assert time.monotonic() - t0 < 0.2  # a 0.5 s pattern: show() does not wait for it
        time.sleep(1.25)
        lights.show(State.IDLE)
        seq = transitions(pin, start)
        gaps = [s.timestamp for s in pin.states[start + 1:start + 3]]  # 1->0 and 0->1
    assert seq[:4] == [1, 0, 1, 0]
    assert all(0.35 < g < 0.8 for g in gaps), gaps


@pytest.mark.slow
def test_error_blinks_fast_and_reconnecting_slowly(pins):
    """ERROR toggles every 0.1 s; RECONNECTING is on 0.5 s then off 1.5 s."""
    with StateLights(single()) as lights:
        pin = pins.pin(ERR)
        start = len(pin.states)
        lights.show(State.ERROR)
        time.sleep(0.55)
        lights.show(State.RECONNECTING)
        fast = len(pin.states) - start
        mark = len(pin.states)
        time.sleep(1.0)
        slow = transitions(pin, mark)
    assert fast >= 4  # about five toggles in 0.55 s
    assert slow == [0]  # one switch-off after 0.5 s on, then dark for 1.5 s


def test_speaking_pulses_through_intermediate_brightness(pins):
    """SPEAKING fades the speaking LED up and down (PWM values between 0 and 1)."""
    with StateLights(single()) as lights:
        pin = pins.pin(SPEAK)
        start = len(pin.states)
        lights.show(State.SPEAKING)
        time.sleep(0.5)
        seq = transitions(pin, start)
    middle = [v for v in seq if 0 < v < 1]
    assert len(middle) >= 5 and middle == sorted(middle)  # still fading in after 0.5 s of 1 s


def test_a_new_state_interrupts_a_pattern_at_once(pins):
    """show() during a pulse returns at once, sets the new state, and the pulse writes no more."""
    with StateLights(single()) as lights:
        lights.show(State.SPEAKING)
        time.sleep(0.3)
        t0 = time.monotonic()
        lights.show(State.MUTED)
        took = time.monotonic() - t0
        assert values(pins, LISTEN, SPEAK, ERR) == (0, 0, 1)
        speak_pin = pins.pin(SPEAK)
        mark = len(speak_pin.states)
        time.sleep(0.3)
        assert len(speak_pin.states) == mark
    assert took < 0.2  # stopping the pattern's thread is a wake-up, not a wait for the 1 s fade


@pytest.mark.slow
def test_the_same_state_again_leaves_the_pattern_running(pins):
    """show(RECONNECTING) twice does not restart its blink (no flash in the off phase)."""
    with StateLights(single()) as lights:
        lights.show(State.RECONNECTING)
        assert settle(pins, [ERR], (1,)) == (1,)
        time.sleep(0.8)  # in the 1.5 s off phase
        lights.show(State.RECONNECTING)
        time.sleep(0.05)
        assert values(pins, ERR) == (0,)


def test_rgb_led_shows_a_whole_conversation_in_colour(pins):
    """IDLE -> CONNECTING -> LISTENING -> THINKING -> SPEAKING -> FOLLOW_UP -> IDLE, as (r, g, b) pin values."""
    rgb_pins = (RED, GREEN, BLUE)
    with StateLights(rgb()) as lights:
        lights.show(State.IDLE)
        assert values(pins, *rgb_pins) == (0, 0, 0)
        lights.show(State.CONNECTING)
        assert settle(pins, rgb_pins, (0, 0, 1)) == (0, 0, 1)  # blue, blinking
        lights.show(State.LISTENING)
        assert values(pins, *rgb_pins) == (0, 0, 1)
        lights.show(State.THINKING)
        assert settle(pins, rgb_pins, (0, 1, 1)) == (0, 1, 1)  # cyan, blinking
        lights.show(State.SPEAKING)
        time.sleep(0.3)
        r, g, b = values(pins, *rgb_pins)
        assert r == 0 and b == 0 and 0 < g < 1  # green, fading in
        lights.show(State.FOLLOW_UP)
        assert values(pins, *rgb_pins) == (0, 0, 0.1)  # dim blue
        lights.show(State.IDLE)
        assert values(pins, *rgb_pins) == (0, 0, 0)


def test_rgb_muted_is_steady_red_and_ring_blinks_yellow_until_the_next_state(pins):
    """MUTED is red and stays red; ring() blinks yellow; show() ends the ringing."""
    rgb_pins = (RED, GREEN, BLUE)
    with StateLights(rgb()) as lights:
        lights.show(State.MUTED)
        first = len(pins.pin(RED).states)
        time.sleep(0.3)
        assert values(pins, *rgb_pins) == (1, 0, 0) and len(pins.pin(RED).states) == first
        lights.ring()
        assert settle(pins, rgb_pins, (1, 1, 0)) == (1, 1, 0)
        assert settle(pins, rgb_pins, (0, 0, 0)) == (0, 0, 0)  # the blink's off half
        assert lights.showing == "ring"
        lights.show(State.IDLE)
        mark = len(pins.pin(GREEN).states)
        time.sleep(0.3)
        assert values(pins, *rgb_pins) == (0, 0, 0) and len(pins.pin(GREEN).states) == mark


def test_active_low_leds_are_lit_by_a_low_pin(pins):
    """active_high = false inverts the pins (common-anode RGB)."""
    with StateLights(rgb(active_high=False)) as lights:
        lights.show(State.MUTED)
        assert values(pins, RED, GREEN, BLUE) == (0, 1, 1)


def test_without_pwm_dim_is_off_pulse_blinks_and_colours_are_on_or_off(pins):
    """pwm = false: plain LEDs; dim shows dark, pulse blinks 1 s, orange becomes red."""
    with StateLights(single(pwm=False)) as lights:
        lights.show(State.FOLLOW_UP)
        assert values(pins, LISTEN, SPEAK, ERR) == (0, 0, 0)
        lights.show(State.SPEAKING)
        assert settle(pins, [SPEAK], (1,)) == (1,)
        time.sleep(0.5)
        assert values(pins, SPEAK) == (1,)  # a 1 s on-phase, not a fade
    with StateLights(rgb(pwm=False)) as lights:
        lights.show(State.RECONNECTING)
        assert settle(pins, [RED, GREEN, BLUE], (1, 0, 0)) == (1, 0, 0)


def test_one_led_shows_every_state(pins):
    """A single LED with one role carries the patterns of all roles."""
    with StateLights(LedSettings(kind="single", pins={"status": LISTEN})) as lights:
        lights.show(State.MUTED)
        assert values(pins, LISTEN) == (1,)
        lights.show(State.FOLLOW_UP)
        assert values(pins, LISTEN) == (0.1,)


def test_the_config_overrides_a_state_pattern_and_colour(pins):
    """[leds.states.idle] pattern = dim, color = #ff8000 with dim_level 0.5: idle glows orange."""
    settings = parse({"leds": {"kind": "rgb", "pins": {"red": RED, "green": GREEN, "blue": BLUE},
                               "dim_level": 0.5,
                               "states": {"idle": {"pattern": "dim", "color": "#ff8000"}}}}).settings.leds
    with StateLights(settings) as lights:
        lights.show(State.IDLE)
        assert values(pins, RED, GREEN, BLUE) == (0.5, 0.251, 0)


def test_close_turns_off_and_is_idempotent(pins):
    """close() stops the pattern, darkens the LEDs and frees the pins; twice is fine; show() after is a no-op."""
    lights = StateLights(single())
    lights.show(State.ERROR)
    lights.close()
    lights.close()
    lights.show(State.LISTENING)
    assert values(pins, LISTEN, SPEAK, ERR) == (0, 0, 0)
    StateLights(single()).close()  # the pins are free again

"""Offline turns in the conversation, in-process on the file backend (real espeak-ng speech, the
real recogniser, gpiozero's mock pins): the LEDs while offline, barge-in on a spoken answer, a
hold-to-talk button, and a reload that swaps the offline settings."""

import logging
import time
from types import SimpleNamespace

import numpy as np
import pytest

from agent.audio.wavfile import read_wav
from agent.demo import user_audio
from agent.offline.answers import OFFLINE_SENTENCE
from agent.state import State
from harness import Run, needs_offline_extra
from test_offline_daemon import VOICE, closed_port, similarity

pytestmark = [pytest.mark.slow,
              needs_offline_extra]

LEDS = {"kind": "single", "pins": {"listening": 22, "speaking": 23, "error": 24}}


def nowhere() -> SimpleNamespace:
    """A server address where nothing listens."""
    return SimpleNamespace(url=f"ws://127.0.0.1:{closed_port()}/v1/realtime")


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_offline_shows_dim_orange_on_the_error_led_and_a_state_of_its_own(tmp_path, pins):
    """After the offline answer the speaker waits in OFFLINE: the error LED glows at dim_level (the
    default look), not dark as in IDLE."""
    run = Run(tmp_path, nowhere(), user_audio([(0.3, "Stop.")], trailing_s=6.0), leds=LEDS,
              wake={"engine": "none"})
    with run:
        run.wait_state(State.OFFLINE)
        wait_for(lambda: round(pins.pin(24).state, 3) == 0.1, timeout=2)
        assert pins.pin(22).state == 0 and pins.pin(23).state == 0
        run.conversation.stop()
    assert run.states[:4] == [State.IDLE, State.CONNECTING, State.LISTENING, State.THINKING]
    assert State.RECONNECTING not in run.states and State.ERROR not in run.states


def test_the_button_stops_a_spoken_offline_answer_and_starts_the_next_turn(tmp_path):
    """While the offline sentence plays, a press cuts it off at once (the output holds only its
    start) and the next turn is offline at once, with no connection tried (the link is known down)."""
    run = Run(tmp_path, nowhere(), user_audio([(0.3, "Read me the news.")], trailing_s=12.0),
              wake={"engine": "none"})
    with run:
        run.wait_state(State.SPEAKING)
        time.sleep(1.0)
        connections = run.conversation.link.connection
        run.conversation.trigger("button")
        wait_for(lambda: run.states[-1] is State.LISTENING)
        assert run.conversation.turn.offline and run.conversation.link.connection == connections
        run.conversation.stop()
    full = VOICE.say(OFFLINE_SENTENCE)
    played = read_wav(tmp_path / "reply.wav")
    assert 0 < len(played) < len(full) * 0.6  # cut, not played to the end
    assert similarity(played, full[:len(played) // 2]) > 0.98  # and it was the offline sentence
    assert run.conversation.counters["barge_ins"] == 1


def test_a_hold_to_talk_button_ends_the_offline_command_when_released(tmp_path, pins, caplog):
    """[button] mode = hold: held while "set the volume to thirty" is said, released after: the
    release ends the command (long before the 3 s of quiet would), and the volume is set."""
    caplog.set_level(logging.INFO, logger="agent.conversation")
    pcm = user_audio([(0.5, "Set the volume to thirty.")], trailing_s=8.0)
    run = Run(tmp_path, nowhere(), pcm, trigger_on_start=False, wake={"engine": "none"},
              button={"pin": 17, "mode": "hold", "long_press_s": 20.0},
              offline={"end_silence_ms": 3000})
    with run:
        pins.pin(17).drive_low()
        time.sleep(2.8)  # the phrase lasts about 1.6 s from 0.5 s
        pins.pin(17).drive_high()
        run.wait_state(State.OFFLINE)
        run.conversation.stop()
    assert "listening -> thinking (button released)" in caplog.text
    assert run.parts.bridge.get_volume() == 30
    played = read_wav(tmp_path / "reply.wav")
    assert similarity(played, VOICE.say("Volume 30.")) > 0.98


def test_a_reload_swaps_the_offline_settings(tmp_path):
    """SIGHUP's path with a new [offline] voice: a new assistant answers with it (the old toolbox's
    timers stay the same DeviceBridge's)."""
    from agent import config as config_mod
    from agent.daemon import rebuild_parts

    run = Run(tmp_path, nowhere(), user_audio([(0.3, "Stop.")], trailing_s=4.0), wake={"engine": "none"})
    old = run.conversation.assistant
    data = run.config.settings.model_dump()
    data["offline"]["voice"] = "en-gb"
    new = config_mod.parse(data, tmp_path / "agent.toml")
    parts = rebuild_parts(run.config, new, run.parts, run.conversation.on_button)
    run.conversation.post("reload", new, parts)  # before the run: swapped before its first turn
    with run:
        run.wait_state(State.OFFLINE)
        run.conversation.stop()
    assistant = run.conversation.assistant
    assert assistant is not old and assistant.voice.name == "en-gb"
    assert assistant.timers is run.parts.bridge.timers and assistant.toolbox is run.conversation.toolbox
    played = read_wav(tmp_path / "reply.wav")
    assert similarity(played, assistant.voice.say("Okay.")) > 0.98
    assert np.abs(played).max() > 1000

"""Offline commands run the model's own built-in tools (real toolbox, timers, WAV speaker)."""

import json
import time
from datetime import datetime

import pytest

from agent.audio.wavfile import WavSpeaker
from agent.daemon import DeviceBridge
from agent.offline.answers import UNAVAILABLE, act, spoken_duration, spoken_time
from agent.offline.intents import Command
from agent.tools.settings import ToolSettings
from agent.tools.toolbox import Toolbox


@pytest.fixture
def device(tmp_path):
    posted = []
    speaker = WavSpeaker(tmp_path / "out.wav")
    bridge = DeviceBridge(speaker, lambda *m: posted.append(m), 50, ring_s=5, max_timers=3)
    toolbox = Toolbox([], bridge, lambda p: tmp_path / p)
    yield toolbox, bridge, posted
    bridge.close()
    speaker.close()


def test_a_timer_set_offline_is_the_models_timer(device):
    """Set offline, the timer is listed by the model's timer tool afterwards, with its label."""
    toolbox, bridge, _ = device
    assert act(Command("set_timer", seconds=150, label="pasta"), toolbox, bridge.timers) == \
        "Pasta timer set for 2 minutes and 30 seconds."
    listed = json.loads(toolbox.run("timer", '{"action": "list"}').output)["timers"]
    assert [(t["label"], t["remaining_s"] in (149, 150)) for t in listed] == [("pasta", True)]
    assert act(Command("time_left", label="pasta"), toolbox, bridge.timers).startswith(
        "The pasta timer has 2 minutes and")
    assert act(Command("cancel_timer", label="pasta"), toolbox, bridge.timers) == "Pasta timer cancelled."
    assert bridge.timers.list() == []


def test_timer_faults_are_plain_sentences(device):
    toolbox, bridge, _ = device
    assert act(Command("cancel_timer"), toolbox, bridge.timers) == "There is no timer running."
    assert act(Command("time_left", label="eggs"), toolbox, bridge.timers) == "There is no eggs timer running."
    for label in ("tea", "eggs"):
        act(Command("set_timer", seconds=60, label=label), toolbox, bridge.timers)
    assert act(Command("cancel_timer"), toolbox, bridge.timers).startswith("Several timers are running.")
    act(Command("set_timer", seconds=60), toolbox, bridge.timers)
    assert act(Command("set_timer", seconds=60), toolbox, bridge.timers) == \
        "Too many timers are running. Cancel one first."


def test_volume_and_mute_reach_the_device(device):
    """Volume changes the speaker's level; mute is posted to the conversation like the model's."""
    toolbox, bridge, posted = device
    assert act(Command("volume", step=10), toolbox, bridge.timers) == "Volume 60."
    assert act(Command("volume", level=20), toolbox, bridge.timers) == "Volume 20."
    assert bridge.get_volume() == 20
    assert act(Command("mute"), toolbox, bridge.timers).startswith("Microphone off.")
    assert posted == [("mute", True)]


def test_stop_silences_a_ringing_timer(device):
    toolbox, bridge, posted = device
    bridge.timers.set(0.05, "tea")
    deadline = time.monotonic() + 10
    while not bridge.timers.ringing() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bridge.timers.ringing()
    assert act(Command("stop"), toolbox, bridge.timers) == "Stopped."
    assert bridge.timers.ringing() == [] and act(Command("stop"), toolbox, bridge.timers) == "Okay."


def test_the_time_is_said_in_words(device):
    toolbox, bridge, _ = device
    assert act(Command("time"), toolbox, bridge.timers, now=datetime(2025, 1, 1, 19, 5)) == "It's 7:05 PM."
    assert spoken_time(datetime(2025, 1, 1, 0, 30)) == "It's 12:30 AM."


def test_a_builtin_that_is_off_is_not_run(device):
    """With the timer built-in off, offline cannot set one either, and says so."""
    toolbox, bridge, _ = device
    toolbox = Toolbox([], bridge, lambda p: p, builtins=("time",))
    assert act(Command("set_timer", seconds=60), toolbox, bridge.timers) == UNAVAILABLE
    assert bridge.timers.list() == []


def test_a_renamed_builtin_is_found_and_a_replaced_one_is_not(device, tmp_path):
    """[[tools]] may offer a built-in under another name; a same-named tool of another kind is not it."""
    renamed = ToolSettings.model_validate({"name": "what_time_is_it", "description": "",
                                           "action": {"kind": "builtin", "name": "time"}})
    replaced = ToolSettings.model_validate({"name": "volume", "description": "my amp",
                                            "parameters": {"type": "object"},
                                            "action": {"kind": "command", "argv": ["true"]}})
    _, bridge, _ = device
    toolbox = Toolbox([renamed, replaced], bridge, lambda p: tmp_path / p)
    assert toolbox.builtin_tool("time") == "what_time_is_it"
    assert toolbox.builtin_tool("volume") is None
    assert toolbox.builtin_tool("timer") == "timer"


def test_durations_are_said_in_words():
    assert spoken_duration(3725) == "1 hour, 2 minutes and 5 seconds"
    assert spoken_duration(60) == "1 minute"

"""Reading an offline command from the recogniser's words (pure)."""

import pytest

from agent.offline.grammar import build
from agent.offline.intents import Command, duration, numbers, understand


@pytest.mark.parametrize("words, command", [
    ("set a timer for five minutes", Command("set_timer", seconds=300)),
    ("set a pasta timer for ten minute", Command("set_timer", seconds=600, label="pasta")),
    ("set a timer for two minute and thirty second", Command("set_timer", seconds=150)),
    ("start a timer for ninety seconds called eggs", Command("set_timer", seconds=90, label="eggs")),
    ("a fifteen minute timer", Command("set_timer", seconds=900)),
    ("set a timer for a minute and a half", Command("set_timer", seconds=90)),
    ("half an hour timer", Command("set_timer", seconds=1800)),
    ("set a timer for an hour and twenty minutes", Command("set_timer", seconds=4800)),
    ("hey jarvis set a timer for twenty one seconds please", Command("set_timer", seconds=21)),
    ("cancel the pasta timer", Command("cancel_timer", label="pasta")),
    ("stop the timer", Command("cancel_timer")),
    ("how long is left on the pasta timer", Command("time_left", label="pasta")),
    ("how much time is left", Command("time_left")),
    ("what time is it", Command("time")),
    ("alexa what's the time", Command("time")),
    ("stop", Command("stop")),
    ("be quiet", Command("stop")),
    ("turn it up", Command("volume", step=10)),
    ("louder", Command("volume", step=10)),
    ("volume down", Command("volume", step=-10)),
    ("set the volume to seven", Command("volume", level=70)),
    ("volume to forty percent", Command("volume", level=40)),
    ("volume five percent", Command("volume", level=5)),
    ("volume a hundred", Command("volume", level=100)),
    ("maximum volume", Command("volume", level=100)),
    ("mute the microphone", Command("mute")),
    ("stop listening", Command("mute")),
])
def test_each_command_shape_is_read(words, command):
    """Every shape the grammar lets through reads as the command it says."""
    assert understand(words) == command


@pytest.mark.parametrize("words", ["", "hey jarvis", "please", "what is the weather tomorrow",
                                   "music some please", "what's on my calendar today",
                                   "set a timer", "volume"])
def test_other_words_are_no_command(words):
    """Other words, a wake word alone, or a command without its number are no command."""
    assert understand(words) is None


def test_numbers_in_words_are_read_with_their_place():
    """Compound numbers are one value; 'a'/'an' before a unit is one."""
    assert numbers("twenty five minutes and an hour".split()) == [(25, 0, 2), (1, 4, 5)]
    assert numbers("one hundred".split()) == [(100, 0, 2)]


def test_durations_add_their_units():
    assert duration("two hours and five minutes".split()) == 7500
    assert duration("ten seconds".split()) == 10
    assert duration("timer".split()) == 0


def test_grammar_has_the_commands_and_other_words():
    """The grammar offers each command rule and the other-words loop, with the wake words."""
    jsgf = build()
    for rule in ("<set_timer>", "<cancel_timer>", "<time_left>", "<what_time>", "<stop>",
                 "<volume>", "<mute>", "<other>", "hey jarvis"):
        assert rule in jsgf
    other = next(line for line in jsgf.splitlines() if line.startswith("<other>"))
    assert " timer " not in other and " stop " not in other and " volume " not in other

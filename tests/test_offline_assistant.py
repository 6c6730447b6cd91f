"""An offline turn end to end in-process: real espeak-ng speech, pocketsphinx, toolbox, timers."""

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES
from agent.audio.wavfile import WavSpeaker
from agent.daemon import DeviceBridge
from agent.errors import ConfigError
from agent.offline import listener as listener_mod
from agent.offline.answers import OFFLINE_SENTENCE
from agent.offline.assistant import OfflineAssistant
from agent.offline.settings import OfflineSettings
from agent.offline.voice import Voice
from agent.speech import espeak
from agent.tools.toolbox import Toolbox


def turn(text: str) -> np.ndarray:
    """0.3 s of quiet, the command in espeak-ng's en-us voice, 2 s of quiet: 24 kHz frames' worth."""
    pcm = espeak.speak(text, voice="en-us", wpm=160)
    return np.concatenate([np.zeros(7200, np.int16), pcm, np.zeros(48000, np.int16)])


def run_turn(assistant: OfflineAssistant, audio: np.ndarray):
    assistant.begin()
    for i in range(0, len(audio), FRAME_SAMPLES):
        if assistant.feed(audio[i:i + FRAME_SAMPLES]):
            break
    return assistant.answer()


@pytest.fixture
def offline(tmp_path):
    posted = []
    speaker = WavSpeaker(tmp_path / "out.wav")
    bridge = DeviceBridge(speaker, lambda *m: posted.append(m), 50, ring_s=5, max_timers=5)
    assistant = OfflineAssistant(OfflineSettings(), Toolbox([], bridge, lambda p: p), bridge.timers)
    yield assistant, bridge, posted
    bridge.close()
    speaker.close()


@pytest.mark.parametrize("said, answer", [
    ("set a pasta timer for two minutes", "Pasta timer set for 2 minutes."),
    ("what time is it", "It's "),
    ("turn it up", "Volume 60."),
    ("stop", "Okay."),
    ("mute", "Microphone off."),
])
def test_a_spoken_command_is_acted_on_and_answered(offline, said, answer):
    """Speech in, the built-in tool run, the fixed answer spoken (as audio, not a tone)."""
    assistant, bridge, posted = offline
    result = run_turn(assistant, turn(said))
    assert result.heard is not None and result.heard.ended == "quiet"
    assert result.text.startswith(answer)
    assert len(result.audio) > 24000 * 0.5 and np.abs(result.audio).max() > 3000
    if said.startswith("set"):
        assert [(t.label, t.seconds) for t in bridge.timers.list()] == [("pasta", 120)]
    if said == "turn it up":
        assert bridge.get_volume() == 60
    if said == "mute":
        assert posted == [("mute", True)]


def test_anything_else_gets_the_offline_sentence(offline):
    assistant, bridge, _ = offline
    result = run_turn(assistant, turn("read me the news"))
    assert result.command is None and result.text == OFFLINE_SENTENCE
    assert bridge.timers.list() == [] and bridge.get_volume() == 50


def test_frames_that_arrive_while_the_recogniser_loads_are_heard(offline):
    """The turn starts before the recogniser is ready: the words said meanwhile still count."""
    assistant, bridge, _ = offline
    audio = turn("set a timer for five minutes")
    assistant.begin()  # starts loading on a worker thread
    for i in range(0, len(audio), FRAME_SAMPLES):
        if assistant.feed(audio[i:i + FRAME_SAMPLES]):
            break
    result = assistant.answer()
    assert result.text == "Timer set for 5 minutes." and len(bridge.timers.list()) == 1


def test_two_turns_in_a_row_reuse_the_recogniser(offline):
    assistant, bridge, _ = offline
    assert run_turn(assistant, turn("set a tea timer for three minutes")).text == "Tea timer set for 3 minutes."
    assert run_turn(assistant, turn("cancel the tea timer")).text == "Tea timer cancelled."
    assert bridge.timers.list() == []


def test_without_the_extra_the_speaker_just_says_it_is_offline(offline, monkeypatch):
    """No pocketsphinx: nothing is recorded or recognised; the turn ends at once with the sentence."""
    _, bridge, _ = offline
    monkeypatch.setattr(listener_mod, "Vad", None)
    assistant = OfflineAssistant(OfflineSettings(), Toolbox([], bridge, lambda p: p), bridge.timers)
    assert not assistant.recognises
    assistant.begin()
    assert assistant.feed(turn("stop")[:FRAME_SAMPLES]) is True
    result = assistant.answer()
    assert result.text == OFFLINE_SENTENCE and result.heard is None and len(result.audio) > 24000


def test_turned_off_it_says_it_is_offline(offline):
    _, bridge, _ = offline
    off = OfflineAssistant(OfflineSettings(enabled=False), Toolbox([], bridge, lambda p: p), bridge.timers)
    off.begin()
    assert off.feed(np.zeros(FRAME_SAMPLES, np.int16)) and off.answer().text == OFFLINE_SENTENCE


def test_a_missing_piper_voice_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"offline\.voice: the Piper voice .*nope\.onnx does not exist"):
        Voice(str(tmp_path / "nope.onnx"))


def test_without_espeak_the_answer_is_a_tone(monkeypatch):
    """espeak-ng missing: the answer is a tone (0.3 s a word), not silence and not a crash."""
    monkeypatch.setattr(espeak, "program", lambda: None)
    pcm = Voice().say("two words")
    assert len(pcm) == int(24000 * 0.6) and np.abs(pcm).max() > 8000


@pytest.mark.parametrize("said", ["who is the president of france", "turn on the kitchen lights",
                                  "how tall is mount everest", "call my mother"])
def test_words_forced_into_a_command_that_fit_the_sound_badly_are_not_acted_on(offline, said):
    """The grammar makes these into some command, but its words fit the sound far worse than a
    free run of phones does: the offline sentence, and no tool runs."""
    assistant, bridge, _ = offline
    result = run_turn(assistant, turn(said))
    assert result.heard.text and not result.heard.sure  # heard as words, refused on their fit
    assert result.command is None and result.text == OFFLINE_SENTENCE
    assert bridge.timers.list() == [] and bridge.get_volume() == 50

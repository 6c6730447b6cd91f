"""Several wake words at once: a list of models in [wake], each with its threshold, one feature front end."""

import logging
import shutil

import numpy as np
import pytest
from wake_corpus import feed, padded, speech  # noqa: F401 (speech: fixture)

from agent.config import parse
from agent.errors import ConfigError
from agent.wake import open_detector
from agent.wake.openwakeword import OpenWakeWordDetector
from agent.wake.settings import WakeSettings

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

JARVIS = ("hey jarvis, what time is it", "en-us+f2", 150)
ALEXA = ("alexa, what time is it", "en-us", 150)


@pytest.fixture(scope="module")
def two_words():
    detector = open_detector(parse({"wake": {"models": ["hey_jarvis", "alexa"]}}).settings.wake)
    yield detector
    detector.close()


def test_each_of_two_wake_words_fires_on_its_own_phrase_and_says_which(two_words, speech):
    """models = ["hey_jarvis", "alexa"]: each phrase fires once, reported by its own model's name."""
    assert two_words.models == ["hey_jarvis", "alexa"]
    for phrase, name in ((JARVIS, "hey_jarvis"), (ALEXA, "alexa")):
        two_words.reset()
        hits = feed(two_words, padded(speech(*phrase)))
        assert [h.model for h in hits] == [name]


def test_one_stream_with_both_words_fires_for_each_in_turn(two_words, speech):
    """'alexa ...', a pause, 'hey jarvis ...' in one stream: alexa then hey_jarvis."""
    gap = np.zeros(24000 * 3, np.int16)
    two_words.reset()
    hits = feed(two_words, padded(np.concatenate([speech(*ALEXA), gap, speech(*JARVIS)])))
    assert [h.model for h in hits] == ["alexa", "hey_jarvis"]


def test_each_model_keeps_its_own_threshold(speech):
    """A threshold no score reaches silences alexa only; hey_jarvis, at its own threshold, still fires."""
    settings = parse({"wake": {"models": [{"model": "alexa", "threshold": 0.9999},
                                          {"model": "hey_jarvis", "threshold": 0.5}]}}).settings.wake
    assert settings.wake_words() == [("alexa", 0.9999), ("hey_jarvis", 0.5)]
    with open_detector(settings) as detector:
        assert feed(detector, padded(speech(*ALEXA))) == []
        detector.reset()
        assert [h.model for h in feed(detector, padded(speech(*JARVIS)))] == ["hey_jarvis"]


def test_a_model_without_its_own_threshold_takes_the_wake_threshold():
    """models = ["alexa", {model = "hey_jarvis", threshold = 0.7}] with threshold = 0.4."""
    wake = parse({"wake": {"threshold": 0.4, "models": ["alexa", {"model": "hey_jarvis",
                                                                  "threshold": 0.7}]}}).settings.wake
    assert wake.wake_words() == [("alexa", 0.4), ("hey_jarvis", 0.7)]


def test_the_log_names_every_wake_word(caplog):
    """One info line lists both models."""
    caplog.set_level(logging.INFO, logger="agent.wake")
    with open_detector(WakeSettings(models=[{"model": "hey_jarvis"}, {"model": "okay_nabu"}])):
        pass
    assert "wake word: listening for openwakeword 'hey_jarvis', 'okay_nabu'" in caplog.messages


def test_the_old_single_model_config_still_works_and_means_one_wake_word():
    """A config written for one model (model, threshold) keeps working unchanged."""
    wake = parse({"wake": {"model": "alexa", "threshold": 0.6}}).settings.wake
    assert wake.wake_words() == [("alexa", 0.6)]


@pytest.mark.parametrize("wake,message", [
    ({"model": "alexa", "models": ["hey_jarvis"]}, r"wake: .*either model = .* or models = .*remove wake.model"),
    ({"models": ["alexa", "hey_jarvs"]}, r"wake.models\[1\].model: use one of .*hey_jarvis"),
    ({"models": ["alexa", {"model": "alexa", "threshold": 0.6}]}, r"alexa is listed twice in wake.models"),
    ({"models": [{"model": "alexa", "threshold": 1.5}]}, r"wake.models\[0\].threshold"),
])
def test_a_bad_list_of_models_is_a_config_error_naming_the_key(wake, message):
    """Both forms at once, a typo, a duplicate or a threshold out of range: ConfigError with the key."""
    with pytest.raises(ConfigError, match=message):
        parse({"wake": wake})


def test_a_second_model_shares_the_feature_front_end():
    """Two models run one melspectrogram and one embedding model: the second adds only its classifier."""
    with OpenWakeWordDetector(["hey_jarvis", "alexa"]) as detector:
        assert detector.name == "openwakeword hey_jarvis, alexa"
        assert len(detector._words) == 2
        features = detector._features
        for word in detector._words:
            assert not hasattr(word, "_features") and word.ww is not features
        assert detector.window_steps("alexa") == detector.window_steps("hey_jarvis") == 16

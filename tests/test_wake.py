"""Wake-word detection for real: openWakeWord's bundled models on espeak-ng speech, clean and in noise."""

import logging
import shutil
import subprocess
import sys
import wave
import zlib
from pathlib import Path

import numpy as np
import pytest
from wake_corpus import LEAD_IN, feed, padded, speech, with_noise  # noqa: F401 (speech: fixture)

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.config import Settings
from agent.wake import Detection, WakeEngineError, open_detector
from agent.wake.openwakeword import OpenWakeWordDetector
from agent.wake.settings import WakeSettings

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

# Voices and speeds at which openWakeWord's hey_jarvis scores over 0.9 on espeak-ng speech, clean and
# in noise: espeak is a rough stand-in for a person, and some of its voices never pass for one.
# The comma is the short natural pause after the wake word.
WAKE_CASES = [("hey jarvis, what time is it", "en-us+f2", 150),
              ("hey jarvis, what time is it", "en-us+f3", 130),
              ("hey jarvis, what time is it", "en+m5", 150),
              ("hey jarvis, what time is it", "en-gb", 130),
              ("hey jarvis what time is it", "en-us+f4", 150),
              ("hey jarvis what time is it", "en-us+f2", 150)]
NEGATIVE_CASES = [("what time is it", "en-us", 160),
                  ("hey travis, turn on the kitchen lights please", "en-gb", 150),
                  ("it is ten past three in the afternoon, and the weather is sunny", "en-us", 175),
                  ("I set a timer for five minutes; I will tell you when it is done", "en-us+f3", 150),
                  ("harvest the jars of jam in the service area, then start the car", "en+m3", 140),
                  ("hey, did you call me? I think the garden needs water", "en-us+f2", 150)]
@pytest.fixture(scope="module")
def jarvis():
    detector = OpenWakeWordDetector("hey_jarvis", threshold=0.5, trigger_level=1, refractory_s=2.0)
    yield detector
    detector.close()


@pytest.mark.parametrize("snr_db", [None, 20, 10], ids=["clean", "20dB", "10dB"])
@pytest.mark.parametrize("text,voice,wpm", WAKE_CASES)
def test_hey_jarvis_is_detected_once_in_speech_and_noise(jarvis, speech, text, voice, wpm, snr_db):
    """'hey jarvis' followed by a command fires exactly once, clean and in pink noise at 20 and 10 dB SNR."""
    jarvis.reset()
    seed = zlib.crc32(f"{text}|{voice}|{wpm}|{snr_db}".encode())
    audio = with_noise(padded(speech(text, voice, wpm)), snr_db, seed)
    hits = feed(jarvis, audio)
    assert len(hits) == 1, hits
    assert hits[0].model == "hey_jarvis" and hits[0].score > 0.5


@pytest.mark.parametrize("text,voice,wpm", NEGATIVE_CASES)
def test_speech_without_the_wake_word_never_fires(jarvis, speech, text, voice, wpm):
    """Commands, replies and sound-alikes ('hey travis', 'jars', 'harvest') do not wake the speaker."""
    jarvis.reset()
    audio = with_noise(padded(speech(text, voice, wpm)), 20, 7)
    assert feed(jarvis, audio) == []


def test_a_reset_detector_scores_like_a_new_one_without_running_the_models(speech, monkeypatch):
    """reset() puts back the state the detector opened with, bit for bit (every window scoring over
    0.01 on the same speech scores the same as on a new detector, at the same place after the
    reset), and runs no model to do it (it was 38 steps of inference on the conversation thread)."""
    audio = with_noise(padded(speech("hey jarvis, what time is it", "en-us+f2", 150)), 20, 3)

    def scores(detector, base: int) -> list[tuple[float, int]]:
        return [(h.score, h.sample_offset - base) for h in feed(detector, audio)]

    with OpenWakeWordDetector("hey_jarvis", threshold=0.01, refractory_s=0.0) as fresh:
        expected = scores(fresh, 0)
    with OpenWakeWordDetector("hey_jarvis", threshold=0.01, refractory_s=0.0) as used:
        feed(used, with_noise(padded(speech("hey jarvis, turn on the kitchen lights", "en-gb", 150)), 10, 4))
        invoked = []
        for lib in {id(o.lib): o.lib for o in (used._features, *(w.ww for w in used._words))}.values():
            invoke = lib.TfLiteInterpreterInvoke
            monkeypatch.setattr(lib, "TfLiteInterpreterInvoke",
                                lambda *a, invoke=invoke: invoked.append(1) or invoke(*a))
        used.reset()
        assert invoked == []
        got = scores(used, used.samples_fed)
        assert invoked  # the count sees the models run
    assert len(expected) > 5 and got == expected


def test_detection_says_where_in_the_stream_it_fired(speech):
    """The detection point lies after 'hey jarvis' ends and before the command does, counted in 24 kHz samples."""
    wake = speech("hey jarvis", "en-us+f2", 150)
    full = speech("hey jarvis, what time is it", "en-us+f2", 150)
    with OpenWakeWordDetector("hey_jarvis") as detector:
        assert detector.process(np.zeros(FRAME_SAMPLES, np.int16)) is None  # offsets count from open
        (hit,) = feed(detector, padded(full))
    start = FRAME_SAMPLES + LEAD_IN
    assert hit.stream_samples == (hit.frame_index + 1) * FRAME_SAMPLES
    assert start + 0.8 * len(wake) < hit.sample_offset < start + len(full)
    assert 0 <= hit.lag_samples < 0.2 * SAMPLE_RATE  # resampler delay plus one 80 ms step at most


def test_same_detection_whatever_the_frame_size(speech):
    """Frames of 480, 160 or 1000 samples give the same detection point (the detector re-frames internally)."""
    audio = padded(speech("hey jarvis, what time is it", "en+m5", 150))
    offsets = []
    for frame in (480, 160, 1000):
        with OpenWakeWordDetector("hey_jarvis") as detector:
            (hit,) = feed(detector, audio, frame)
        offsets.append(hit.sample_offset)
    assert max(offsets) - min(offsets) <= 1280 * 3 // 2  # within one 80 ms step


def test_digital_silence_reaches_the_engine_as_silence():
    """The 16 kHz steps the engine gets from zero frames are zero (soxr's int16 output would add random dither)."""
    steps = []
    with OpenWakeWordDetector("hey_jarvis") as detector:
        engine_step = detector._step_engine
        detector._step_engine = lambda pcm: steps.append(pcm.copy()) or engine_step(pcm)
        feed(detector, np.zeros(SAMPLE_RATE, np.int16))
    assert len(steps) >= 10 and not np.any(np.concatenate(steps))


_SCORE_SCRIPT = """
import sys, wave, numpy as np
from agent.wake.openwakeword import OpenWakeWordDetector
with wave.open(sys.argv[1]) as w:
    audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
with OpenWakeWordDetector("hey_jarvis", threshold=0.001, refractory_s=0.0) as d:
    hits = [d.process(audio[i:i + 480]) for i in range(0, len(audio) - 479, 480)]
print([(h.sample_offset, round(h.score, 6)) for h in hits if h is not None])
"""


def test_the_same_audio_scores_the_same_in_every_process(speech, tmp_path):
    """Two daemons hearing the same audio get the same scores (no random dither in the resampler)."""
    path = tmp_path / "wake.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(padded(speech("hey jarvis, what time is it", "en+m3", 150)).tobytes())
    runs = [subprocess.run([sys.executable, "-c", _SCORE_SCRIPT, str(path)], capture_output=True,
                           text=True, check=True, cwd=Path(__file__).parent.parent).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].count("(") > 5


def test_refractory_period_makes_one_trigger_of_a_repeated_wake_word(speech):
    """'hey jarvis' twice within the refractory period fires once; after it has passed, again."""
    wake = speech("hey jarvis, what time is it", "en-us+f3", 130)
    gap = np.zeros(SAMPLE_RATE // 4, np.int16)
    twice = np.concatenate([wake, gap, wake])
    with OpenWakeWordDetector("hey_jarvis", refractory_s=10.0) as detector:
        assert len(feed(detector, padded(twice))) == 1
    with OpenWakeWordDetector("hey_jarvis", refractory_s=0.5) as detector:
        assert len(feed(detector, padded(twice))) == 2


def test_trigger_level_needs_that_many_consecutive_windows(speech):
    """A trigger level longer than the word's run of high scores never fires; level 2 fires later than level 1."""
    audio = padded(speech("hey jarvis, what time is it", "en-us+f2", 150))
    with OpenWakeWordDetector("hey_jarvis", trigger_level=1) as one, \
            OpenWakeWordDetector("hey_jarvis", trigger_level=2) as two, \
            OpenWakeWordDetector("hey_jarvis", trigger_level=20) as twenty:
        (first,) = feed(one, audio)
        (second,) = feed(two, audio)
        assert feed(twenty, audio) == []
    assert second.sample_offset - first.sample_offset == 1280 * 3 // 2  # one 80 ms window later


def test_reset_forgets_the_refractory_period(jarvis, speech):
    """After reset() the same wake word fires again at once, and offsets keep counting from open."""
    audio = padded(speech("hey jarvis, what time is it", "en-us+f3", 130))
    jarvis.reset()
    (a,) = feed(jarvis, audio)
    jarvis.reset()
    (b,) = feed(jarvis, audio)
    assert b.sample_offset - a.sample_offset == len(audio) // FRAME_SAMPLES * FRAME_SAMPLES


def test_close_is_idempotent_and_a_closed_detector_hears_nothing(speech):
    """close() twice is fine; process() after close returns None."""
    detector = OpenWakeWordDetector("hey_jarvis")
    detector.close()
    detector.close()
    assert detector.closed
    assert feed(detector, padded(speech("hey jarvis, what time is it", "en-us+f2", 150))) == []


def test_a_tflite_path_works_like_the_builtin_name(speech):
    """A model given as a .tflite path is loaded and reported by its file name."""
    import pyopen_wakeword
    path = Path(pyopen_wakeword.__file__).parent / "models" / "hey_jarvis.tflite"
    with OpenWakeWordDetector(path) as detector:
        (hit,) = feed(detector, padded(speech("hey jarvis, what time is it", "en-us+f2", 150)))
    assert hit.model == "hey_jarvis"
    assert detector.name == "openwakeword hey_jarvis"


def test_another_bundled_model_listens_for_its_own_word(speech):
    """The alexa model fires on 'alexa' and not on 'hey jarvis'."""
    with OpenWakeWordDetector("alexa") as detector:
        hits = feed(detector, padded(speech("alexa, what time is it", "en-us", 150)))
        assert [h.model for h in hits] == ["alexa"]
        detector.reset()
        assert feed(detector, padded(speech("hey jarvis, what time is it", "en-us+f2", 150))) == []


def test_a_file_that_is_not_a_model_is_refused_before_the_native_library_sees_it(tmp_path):
    """A non-TFLite file gives a WakeEngineError naming it (the C library would crash on it)."""
    bogus = tmp_path / "word.tflite"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(WakeEngineError, match="word.tflite is not a TFLite"):
        OpenWakeWordDetector(bogus)
    with pytest.raises(WakeEngineError, match="cannot read wake-word model"):
        OpenWakeWordDetector(tmp_path / "missing.tflite")


def test_factory_opens_the_configured_model_and_says_so(caplog):
    """open_detector gives an openWakeWord detector for the default config, with one info line."""
    caplog.set_level(logging.INFO, logger="agent.wake")
    detector = open_detector(Settings().wake)
    try:
        assert isinstance(detector, OpenWakeWordDetector) and detector.model == "hey_jarvis"
        messages = [r.getMessage() for r in caplog.records]
        assert messages == ["wake word: listening for openwakeword 'hey_jarvis'"]
    finally:
        detector.close()


def test_factory_resolves_a_relative_model_path_against_the_config_folder(tmp_path):
    """wake.model = 'models/x.tflite' is looked up beside the config file."""
    import pyopen_wakeword
    (tmp_path / "models").mkdir()
    shutil.copy(Path(pyopen_wakeword.__file__).parent / "models" / "okay_nabu.tflite", tmp_path / "models")
    detector = open_detector(WakeSettings(model="models/okay_nabu.tflite"), base_dir=tmp_path)
    assert detector is not None and detector.model == "okay_nabu"
    detector.close()


def test_factory_with_engine_none_means_button_only(caplog):
    """engine = none: no detector, one line saying only the button starts a conversation."""
    caplog.set_level(logging.INFO, logger="agent.wake")
    assert open_detector(WakeSettings(engine="none")) is None
    assert len(caplog.records) == 1 and "only the button" in caplog.records[0].getMessage()


def test_factory_never_raises_on_a_broken_model_file(tmp_path, caplog):
    """A broken custom model gives None and one warning naming the file and the consequence."""
    (tmp_path / "mine.tflite").write_bytes(b"\0" * 64)
    detector = open_detector(WakeSettings(model="mine.tflite"), base_dir=tmp_path)
    assert detector is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "mine.tflite is not a TFLite" in record.getMessage()
    assert "only the button starts a conversation" in record.getMessage()


def test_settings_refuse_an_unknown_model_name():
    """A typo in wake.model is a config error naming the choices, not a silent fallback."""
    from agent.config import parse
    from agent.errors import ConfigError
    with pytest.raises(ConfigError, match=r"wake.model: .*hey_jarvis"):
        parse({"wake": {"model": "hey_jarvs"}})
    with pytest.raises(ConfigError, match="one sensitivity per keyword"):
        parse({"wake": {"porcupine": {"keywords": ["jarvis", "alexa"], "sensitivities": [0.5]}}})

"""The owner's voice verifier: enrolled from WAV files by `mira-agent enroll`, asked only when a model fires."""

import logging
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
from wake_corpus import feed, padded, speech  # noqa: F401 (speech: fixture)

from agent.audio.base import SAMPLE_RATE
from agent.wake import WakeEngineError, open_detector
from agent.wake.enroll import suggest_threshold
from agent.wake.openwakeword import OpenWakeWordDetector
from agent.wake.settings import WakeSettings
from agent.wake.verifier import Verifier

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")

OWNER = "en-us+f2"
ENROLL_SPEEDS = (130, 140, 150, 160, 170)
# The owner on other days (other speeds, with a command), and other voices the base model hears.
OWNER_TESTS = [("hey jarvis, what time is it", OWNER, 155), ("hey jarvis, turn on the lights", OWNER, 135)]
# (en-us+f4, espeak's own variant of the owner's base voice, gets through: the verifier tells voices
# apart about as well as their timbres differ.)
OTHERS = [("hey jarvis, what time is it", "en-gb", 130), ("hey jarvis, what time is it", "en+m5", 150)]
ROOT = Path(__file__).resolve().parent.parent


def _wav(path: Path, pcm: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.astype(np.int16).tobytes())
    return path


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, speech):
    """A config folder in which `mira-agent enroll` made a verifier from five WAV clips of the owner."""
    folder = tmp_path_factory.mktemp("enroll")
    clips = [_wav(folder / f"take{wpm}.wav", speech("hey jarvis", OWNER, wpm)) for wpm in ENROLL_SPEEDS]
    (folder / "agent.toml").write_text('[wake]\nmodel = "hey_jarvis"\n')
    run = _cli("enroll", "--config", folder / "agent.toml", *clips)
    assert run.returncode == 0, run.stderr
    return folder, run.stdout


def _detections(detector, speech, cases):
    out = []
    for case in cases:
        detector.reset()
        out.append([h.model for h in feed(detector, padded(speech(*case)))])
    return out


def test_enroll_reports_the_scores_suggests_a_threshold_and_says_how_to_use_the_file(enrolled):
    """The command lists each clip's score, a suggested threshold, and the config line to add."""
    folder, out = enrolled
    assert (folder / "wake-verifier.npz").is_file()
    assert out.count("  clip ") == 5 and "clips fire at threshold 0.5" in out
    assert "suggested threshold" in out
    assert 'verifier = "wake-verifier.npz"' in out


def test_the_verifier_keeps_the_owner_and_turns_other_voices_down(enrolled, speech):
    """With the verifier, the owner's unseen clips still fire; other voices that fire without it do not."""
    folder, _ = enrolled
    settings = WakeSettings(verifier="wake-verifier.npz")
    with OpenWakeWordDetector("hey_jarvis") as plain, open_detector(settings, base_dir=folder) as checked:
        assert checked.verifier is not None
        assert _detections(plain, speech, OWNER_TESTS) == [["hey_jarvis"]] * len(OWNER_TESTS)
        assert _detections(checked, speech, OWNER_TESTS) == [["hey_jarvis"]] * len(OWNER_TESTS)
        assert _detections(plain, speech, OTHERS) == [["hey_jarvis"]] * len(OTHERS)
        assert _detections(checked, speech, OTHERS) == [[]] * len(OTHERS)


def test_the_verifier_is_asked_only_when_the_base_model_fires(enrolled, speech):
    """Silence and speech without the wake word never reach the verifier; each model firing does, once."""
    folder, _ = enrolled
    with open_detector(WakeSettings(verifier="wake-verifier.npz", vad_gate=False), base_dir=folder) as detector:
        asked = []
        judge = detector.verifier.accepts
        detector.verifier.accepts = lambda model, window: asked.append(model) or judge(model, window)
        feed(detector, np.zeros(5 * SAMPLE_RATE, np.int16))
        feed(detector, padded(speech("it is ten past three in the afternoon", "en-us", 160)))
        assert asked == []
        detector.reset()
        feed(detector, padded(speech(*OWNER_TESTS[0])))
        assert asked == ["hey_jarvis"]


def test_a_reloaded_verifier_decides_as_the_one_written(enrolled, speech, tmp_path):
    """Load, save elsewhere, load again: the same probabilities on the same windows, the same decisions."""
    folder, _ = enrolled
    first = Verifier.load(folder / "wake-verifier.npz")
    first.save(tmp_path / "copy.npz")
    second = Verifier.load(tmp_path / "copy.npz")
    with OpenWakeWordDetector("hey_jarvis") as detector:
        _, embeddings = detector.analyse(padded(speech(*OTHERS[0])))
    windows = [embeddings[i - 16:i] for i in range(16, len(embeddings))]
    a = [first.entries["hey_jarvis"].probability(w) for w in windows]
    b = [second.entries["hey_jarvis"].probability(w) for w in windows]
    assert a == b and max(a) > min(a)
    with open_detector(WakeSettings(verifier=str(tmp_path / "copy.npz"))) as detector:
        assert _detections(detector, speech, OWNER_TESTS + OTHERS[:1]) == [["hey_jarvis"]] * 2 + [[]]


def test_a_damaged_verifier_file_is_refused_with_a_sentence_naming_it(tmp_path, caplog):
    """A file that is not a verifier: WakeEngineError naming it; the daemon listens without it."""
    bad = tmp_path / "wake-verifier.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WakeEngineError, match=f"wake verifier {bad} is not a verifier file.*mira-agent enroll"):
        Verifier.load(bad)
    with pytest.raises(WakeEngineError, match="does not exist"):
        Verifier.load(tmp_path / "missing.npz")
    caplog.set_level(logging.INFO, logger="agent.wake")
    with open_detector(WakeSettings(verifier="wake-verifier.npz"), base_dir=tmp_path) as detector:
        assert detector is not None and detector.verifier is None
    assert any(str(bad) in m and "listening without it" in m for m in caplog.messages)


def test_a_verifier_for_another_model_is_refused(enrolled, tmp_path):
    """A hey_jarvis verifier with alexa configured, or made with another hey_jarvis file: refused, named."""
    folder, _ = enrolled
    verifier = Verifier.load(folder / "wake-verifier.npz")
    with OpenWakeWordDetector("alexa") as detector:
        with pytest.raises(WakeEngineError, match=r"wake-verifier.npz is for hey_jarvis, not for .*alexa"):
            detector.use_verifier(verifier)
        assert detector.verifier is None
    entry = verifier.entries["hey_jarvis"]
    verifier.entries["hey_jarvis"] = type(entry)(entry.weights, entry.bias, entry.mean, entry.scale,
                                                 "0123456789abcdef", entry.positives)
    verifier.save(tmp_path / "other.npz")
    with OpenWakeWordDetector("hey_jarvis") as detector:
        with pytest.raises(WakeEngineError, match=r"other.npz was made for another hey_jarvis model file"):
            detector.use_verifier(Verifier.load(tmp_path / "other.npz"))


def test_wake_test_scores_the_owners_clips_and_the_verifier(enrolled, speech):
    """`mira-agent wake-test` prints each clip's score and what the configured verifier says."""
    folder, _ = enrolled
    (folder / "with.toml").write_text('[wake]\nmodel = "hey_jarvis"\nverifier = "wake-verifier.npz"\n')
    clips = [_wav(folder / "mine.wav", speech(*OWNER_TESTS[0])), _wav(folder / "theirs.wav", speech(*OTHERS[0]))]
    run = _cli("wake-test", "--config", folder / "with.toml", *clips)
    assert run.returncode == 0, run.stderr
    assert "clip 1: hey_jarvis" in run.stdout and "2 of 2 clips fire" in run.stdout
    assert "accepts 1 of the 2 clips" in run.stdout


def test_too_few_clips_that_sound_like_the_wake_word_train_nothing(tmp_path, speech):
    """Clips of other words: exit 1 with a sentence saying what to do, and no file."""
    clips = [_wav(tmp_path / f"c{i}.wav", speech(t, OWNER, 150))
             for i, t in enumerate(["good morning", "turn off the lights", "what time is it"])]
    (tmp_path / "agent.toml").write_text("[wake]\n")
    run = _cli("enroll", "--config", tmp_path / "agent.toml", *clips)
    assert run.returncode == 1
    assert "clips sound like hey_jarvis" in run.stderr and "enroll again" in run.stderr
    assert not (tmp_path / "wake-verifier.npz").exists()


@pytest.mark.parametrize("peaks,expected", [([0.91, 1.0, 0.97], 0.7), ([0.4, 0.9], 0.3),
                                            ([0.2, 0.95], 0.2), ([0.05], 0.5)])
def test_the_suggested_threshold_sits_under_the_weakest_clip(peaks, expected):
    """0.8 x the weakest usable clip, rounded down to 0.05, kept within 0.2..0.7."""
    assert suggest_threshold(peaks) == expected


def test_check_shows_whether_a_verifier_is_in_use(enrolled):
    """`mira-agent check`'s row: none, in use for which wake word, or refused with the fix."""
    from agent.config import load
    from agent.service.check import check_wake_verifier
    folder, _ = enrolled
    cases = {"none.toml": '[wake]\nmodel = "hey_jarvis"\n',
             "used.toml": '[wake]\nmodel = "hey_jarvis"\nverifier = "wake-verifier.npz"\n',
             "other.toml": '[wake]\nmodel = "alexa"\nverifier = "wake-verifier.npz"\n'}
    rows = {}
    for name, text in cases.items():
        (folder / name).write_text(text)
        rows[name] = check_wake_verifier(load(folder / name))
    assert rows["none.toml"].ok is None and "mira-agent enroll" in rows["none.toml"].detail
    assert rows["used.toml"].ok is True and "checked for hey_jarvis (5 clips)" in rows["used.toml"].detail
    assert rows["other.toml"].ok is False and "wake-verifier.npz is for hey_jarvis" in rows["other.toml"].detail
    assert "mira-agent enroll" in rows["other.toml"].fix


def test_enroll_records_its_clips_through_the_configured_microphone(tmp_path, speech):
    """No WAV given: five 3 s clips come from [audio]'s microphone (here the file backend), one a prompt."""
    slot = 3 * SAMPLE_RATE
    takes = []
    for wpm in ENROLL_SPEEDS:
        take = np.zeros(slot, np.int16)
        clip = speech("hey jarvis", OWNER, wpm)
        take[SAMPLE_RATE // 2:SAMPLE_RATE // 2 + len(clip)] = clip
        takes.append(take)
    _wav(tmp_path / "room.wav", np.concatenate(takes))
    (tmp_path / "agent.toml").write_text('[audio]\nbackend = "file"\ninput_file = "room.wav"\n'
                                         'output_file = "out.wav"\nrealtime = false\n'
                                         '[wake]\nmodel = "hey_jarvis"\nverifier = "voice.npz"\n')
    run = _cli("enroll", "--config", tmp_path / "agent.toml", "--out", tmp_path / "voice.npz")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('say "hey jarvis" now (3 s)') == 5
    assert "5 of 5 clips fire" in run.stdout
    assert "the config already names it" in run.stdout
    assert Verifier.load(tmp_path / "voice.npz").entries["hey_jarvis"].positives == 5


def test_a_reload_reopens_the_detector_with_the_verifier_enroll_rewrote(enrolled, tmp_path):
    """SIGHUP after `mira-agent enroll` rewrote the verifier under the same name: the reloaded
    detector asks the new file, though [wake] itself did not change."""
    from agent.config import parse as parse_config
    from agent.daemon import Parts, rebuild_parts
    folder, _ = enrolled
    shutil.copy(folder / "wake-verifier.npz", tmp_path / "wake-verifier.npz")
    wake = {"wake": {"model": "hey_jarvis", "verifier": "wake-verifier.npz"}}
    old = parse_config(wake, tmp_path / "agent.toml")
    new = parse_config(wake, tmp_path / "agent.toml")
    verifier = Verifier.load(tmp_path / "wake-verifier.npz")
    entry = verifier.entries["hey_jarvis"]
    verifier.entries["hey_jarvis"] = type(entry)(entry.weights, entry.bias + 1.0, entry.mean, entry.scale,
                                                 entry.model_digest, 7)
    verifier.save(tmp_path / "wake-verifier.npz")  # enroll again, 7 clips this time
    parts = Parts()
    try:
        built = rebuild_parts(old, new, parts, lambda event: None)
        assert built["detector"].verifier.entries["hey_jarvis"].positives == 7
    finally:
        parts.close()

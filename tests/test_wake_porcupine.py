"""Porcupine: its wiring with the native library replaced at pvporcupine.create, and its real bad-key path."""

import logging

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.wake import WakeEngineError, open_detector
from agent.wake.openwakeword import OpenWakeWordDetector
from agent.wake.porcupine import PorcupineDetector
from agent.wake.settings import PorcupineSettings, WakeSettings

KEY = "k3y-Th4t-Must-N3ver-Appear-In-Logs=="


class FakePorcupine:
    """Stands in for pvporcupine.Porcupine (whose library needs an online AccessKey): it 'hears' a
    keyword in any 512-sample frame louder than a threshold, and checks frames as the real one does."""

    frame_length = 512
    sample_rate = 16000

    def __init__(self, keyword_count: int, fire_index: int = 0):
        self.frames: list[list[int]] = []
        self.deleted = 0
        self.keyword_count = keyword_count
        self.fire_index = fire_index

    def process(self, pcm):
        if len(pcm) != self.frame_length:
            raise ValueError(f"Invalid frame length. expected 512 but received {len(pcm)}")
        assert all(isinstance(v, int) and -32768 <= v <= 32767 for v in pcm[:8])
        self.frames.append(pcm)
        return self.fire_index if np.abs(np.asarray(pcm)).mean() > 5000 else -1

    def delete(self):
        self.deleted += 1


class FakeCreate:
    """pvporcupine.create's signature; records what it was asked for."""

    def __init__(self, fire_index: int = 0):
        self.calls: list[dict] = []
        self.engine: FakePorcupine | None = None
        self.fire_index = fire_index

    def __call__(self, access_key, keywords=None, keyword_paths=None, sensitivities=None):
        self.calls.append(dict(access_key=access_key, keywords=keywords, keyword_paths=keyword_paths,
                               sensitivities=sensitivities))
        self.engine = FakePorcupine(len(keywords or keyword_paths), self.fire_index)
        return self.engine


def tone(seconds: float, freq: float = 440.0, amp: float = 0.05) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return np.round(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def feed(detector, audio):
    return [h for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES)
            if (h := detector.process(audio[i:i + FRAME_SAMPLES])) is not None]


@pytest.fixture
def no_secrets(monkeypatch):
    monkeypatch.delenv("PORCUPINE_ACCESS_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_porcupine_gets_512_sample_frames_of_the_audio_resampled_to_16k():
    """24 kHz capture frames reach Porcupine as whole 512-sample 16 kHz frames of the same sound."""
    create = FakeCreate()
    with PorcupineDetector(KEY, ["jarvis"], create=create) as detector:
        assert feed(detector, tone(2.0)) == []
    frames = create.engine.frames
    assert all(len(f) == 512 for f in frames)
    heard = np.concatenate([np.asarray(f, np.float64) for f in frames])
    assert abs(len(heard) - 2.0 * 16000) < 512 + 400  # all but the resampler's delay and the last part frame
    spectrum = np.abs(np.fft.rfft(heard[4000:4000 + 16000]))
    assert np.argmax(spectrum) == 440  # 1 Hz bins over one second: still a 440 Hz tone


def test_a_keyword_gives_one_detection_with_its_name_and_position():
    """A 0.3 s 'keyword' fires once (refractory), named by its keyword, at a 24 kHz offset inside it."""
    create = FakeCreate(fire_index=1)
    audio = np.concatenate([tone(1.0), tone(0.3, amp=0.6), tone(1.0)])
    with PorcupineDetector(KEY, ["alexa", "jarvis"], sensitivities=[0.4, 0.7], create=create) as detector:
        (hit,) = feed(detector, audio)
    assert create.calls == [dict(access_key=KEY, keywords=["alexa", "jarvis"], keyword_paths=None,
                                 sensitivities=[0.4, 0.7])]
    assert hit.model == "jarvis" and hit.score == 1.0
    assert SAMPLE_RATE < hit.sample_offset <= 1.3 * SAMPLE_RATE + 512 * 3 // 2
    assert hit.stream_samples == (hit.frame_index + 1) * FRAME_SAMPLES


def test_ppn_files_are_passed_as_keyword_paths_and_named_by_their_stem(tmp_path):
    """Custom .ppn keywords go to keyword_paths with 0.5 sensitivity each; detections carry the file's stem."""
    ppn = tmp_path / "hey-mira_en_linux_v3_0_0.ppn"
    ppn.write_bytes(b"ppn")
    create = FakeCreate()
    with PorcupineDetector(KEY, [str(ppn)], create=create) as detector:
        (hit,) = feed(detector, np.concatenate([tone(0.5), tone(0.3, amp=0.6)]))
    assert create.calls[0]["keyword_paths"] == [str(ppn)] and create.calls[0]["sensitivities"] == [0.5]
    assert hit.model == "hey-mira_en_linux_v3_0_0"


def test_a_missing_ppn_file_or_a_mix_of_kinds_is_refused(tmp_path):
    """A .ppn that does not exist, or built-in names mixed with .ppn files, is a WakeEngineError."""
    with pytest.raises(WakeEngineError, match="missing.ppn does not exist"):
        PorcupineDetector(KEY, [str(tmp_path / "missing.ppn")], create=FakeCreate())
    (tmp_path / "a.ppn").write_bytes(b"ppn")
    with pytest.raises(WakeEngineError, match="mixes built-in names and .ppn"):
        PorcupineDetector(KEY, ["jarvis", str(tmp_path / "a.ppn")], create=FakeCreate())


def test_close_deletes_the_engine_once():
    """close() twice deletes the native engine once."""
    create = FakeCreate()
    detector = PorcupineDetector(KEY, ["jarvis"], create=create)
    detector.close()
    detector.close()
    assert create.engine.deleted == 1


def test_factory_reads_the_access_key_from_the_systemd_credential_first(tmp_path, monkeypatch):
    """The credential porcupine-access-key wins over PORCUPINE_ACCESS_KEY."""
    (tmp_path / "porcupine-access-key").write_text(KEY + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("PORCUPINE_ACCESS_KEY", "from-the-environment")
    create = FakeCreate()
    detector = open_detector(WakeSettings(engine="porcupine"), porcupine_create=create)
    assert isinstance(detector, PorcupineDetector)
    detector.close()
    assert create.calls[0]["access_key"] == KEY


def test_factory_resolves_a_relative_key_file_against_the_config_folder(tmp_path, no_secrets):
    """wake.porcupine.access_key_file relative to the config's folder, read when private."""
    key_file = tmp_path / "porcupine.key"
    key_file.write_text(KEY)
    key_file.chmod(0o600)
    create = FakeCreate()
    settings = WakeSettings(engine="porcupine", porcupine=PorcupineSettings(access_key_file="porcupine.key"))
    detector = open_detector(settings, base_dir=tmp_path, porcupine_create=create)
    detector.close()
    assert create.calls[0]["access_key"] == KEY


def test_a_key_file_others_can_read_falls_back_with_the_chmod_fix(tmp_path, no_secrets, caplog):
    """An unsafe key file is not used: one warning says chmod 600 and that the fallback listens instead."""
    key_file = tmp_path / "porcupine.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    settings = WakeSettings(engine="porcupine", fallback_engine="openwakeword",
                            porcupine=PorcupineSettings(access_key_file=str(key_file)))
    detector = open_detector(settings, porcupine_create=FakeCreate())
    assert isinstance(detector, OpenWakeWordDetector)
    detector.close()
    (record,) = caplog.records
    assert f"chmod 600 {key_file}" in record.getMessage()
    assert "listening with the fallback openwakeword 'hey_jarvis' instead" in record.getMessage()
    assert KEY not in caplog.text


def test_no_access_key_at_all_means_button_only(no_secrets, caplog):
    """Porcupine without a key and no fallback: None, and one warning naming where a key may come from."""
    assert open_detector(WakeSettings(engine="porcupine"), porcupine_create=FakeCreate()) is None
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "porcupine has no AccessKey" in record.getMessage()
    assert "PORCUPINE_ACCESS_KEY" in record.getMessage()
    assert "only the button starts a conversation" in record.getMessage()


def test_real_porcupine_refuses_a_bad_key_without_showing_it():
    """The real native library rejects a malformed key at once; the error says so and hides the key."""
    with pytest.raises(WakeEngineError) as info:
        PorcupineDetector(KEY, ["jarvis"])
    message = str(info.value)
    assert message.startswith("porcupine could not start: it rejected its AccessKey")
    assert KEY not in message and "***" in message


def test_real_porcupine_refuses_an_unknown_builtin_keyword():
    """An unknown built-in keyword names the ones there are."""
    with pytest.raises(WakeEngineError, match=r"no built-in keyword 'hey mira' \(it has: alexa, .*jarvis"):
        PorcupineDetector(KEY, ["hey mira"])


def test_bad_key_falls_back_to_openwakeword_in_one_log_line(monkeypatch, caplog):
    """engine porcupine with a bad key and fallback openwakeword: the daemon listens for hey_jarvis instead."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("PORCUPINE_ACCESS_KEY", KEY)
    detector = open_detector(WakeSettings(engine="porcupine", fallback_engine="openwakeword"))
    assert isinstance(detector, OpenWakeWordDetector)
    detector.close()
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("wake word: porcupine could not start: it rejected its AccessKey")
    assert record.getMessage().endswith("listening with the fallback openwakeword 'hey_jarvis' instead")
    assert KEY not in caplog.text


def test_bad_key_without_fallback_leaves_the_button(monkeypatch, caplog):
    """engine porcupine with a bad key and no fallback: None and one warning, never an exception."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.setenv("PORCUPINE_ACCESS_KEY", KEY)
    assert open_detector(WakeSettings(engine="porcupine")) is None
    assert len(caplog.records) == 1
    assert "the wake word is off and only the button starts a conversation" in caplog.records[0].getMessage()
    assert KEY not in caplog.text

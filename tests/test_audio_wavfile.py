"""The file backend: WAV microphone and speaker, and the factory that picks a backend."""

import threading
import time
import wave

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES
from agent.audio.devices import open_microphone, open_speaker
from agent.audio.settings import AudioSettings
from agent.audio.resample import resample
from agent.audio.wavfile import WavMicrophone, WavSpeaker, read_wav
from agent.errors import AudioDeviceError, ConfigError


def write_wav(path, pcm, rate, channels=1, width=2):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes() if width == 2 else bytes(pcm))
    return path


def noise(n, seed=0):
    return np.random.default_rng(seed).integers(-10000, 10000, n, dtype=np.int16)


def collect(mic, timeout=10):
    frames, ended = [], threading.Event()
    mic.start(frames.append, ended.set)
    assert ended.wait(timeout)
    return frames


def test_24k_mono_file_comes_out_sample_exact_in_480_sample_frames(tmp_path):
    """A 24 kHz mono WAV gives its samples unchanged, in exact frames, the last padded with silence."""
    pcm = noise(24000 + 100)
    mic = WavMicrophone(write_wav(tmp_path / "in.wav", pcm, 24000), realtime=False)
    frames = collect(mic)
    assert all(len(f) == FRAME_SAMPLES and f.dtype == np.int16 for f in frames)
    flat = np.concatenate(frames)
    assert len(flat) == 51 * FRAME_SAMPLES
    np.testing.assert_array_equal(flat[:len(pcm)], pcm)
    assert not flat[len(pcm):].any()


def test_48k_stereo_file_is_mixed_down_and_resampled(tmp_path):
    """A 48 kHz stereo WAV is averaged to mono and resampled (soxr, no dither) to 24 kHz."""
    left, right = noise(48000, 1), noise(48000, 2)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    mic = WavMicrophone(write_wav(tmp_path / "in.wav", stereo, 48000, channels=2), realtime=False)
    mono = ((left.astype(float) + right) / 2).round().astype(np.int16)
    expect = resample(mono, 48000, 24000)
    flat = np.concatenate(collect(mic))
    np.testing.assert_array_equal(flat[:len(expect)], expect)


def test_realtime_file_is_paced_like_a_sound_card(tmp_path):
    """0.4 s of audio takes 0.4 s to deliver in real time, one frame per 20 ms."""
    mic = WavMicrophone(write_wav(tmp_path / "in.wav", noise(9600), 24000))
    times = []
    ended = threading.Event()
    t0 = time.monotonic()
    mic.start(lambda f: times.append(time.monotonic() - t0), ended.set)
    assert ended.wait(5)
    assert len(times) == 20
    assert 0.38 <= times[-1] <= 0.6
    assert times[0] >= 0.015


def test_stop_ends_delivery_without_on_end(tmp_path):
    """stop() halts a real-time file mid-way; on_end is not called and stop is idempotent."""
    mic = WavMicrophone(write_wav(tmp_path / "in.wav", noise(48000), 24000))
    frames, ended = [], threading.Event()
    mic.start(frames.append, ended.set)
    time.sleep(0.1)
    mic.stop()
    n = len(frames)
    time.sleep(0.1)
    mic.close()
    assert 2 <= n <= 10 and len(frames) == n and not ended.is_set()


def test_missing_and_unsupported_files_are_audio_device_errors(tmp_path):
    """A missing file, a non-WAV file and an 8-bit WAV each raise AudioDeviceError naming the file."""
    with pytest.raises(AudioDeviceError, match="does not exist"):
        WavMicrophone(tmp_path / "nope.wav")
    (tmp_path / "text.wav").write_text("not a wav")
    with pytest.raises(AudioDeviceError, match="not a readable WAV"):
        read_wav(tmp_path / "text.wav")
    write_wav(tmp_path / "8bit.wav", np.zeros(100, np.uint8), 8000, width=1)
    with pytest.raises(AudioDeviceError, match="8-bit"):
        read_wav(tmp_path / "8bit.wav")


def test_speaker_writes_exactly_what_it_played_with_positions_per_item(tmp_path):
    """The WAV speaker's file holds the chunks played, in order; positions count each item."""
    out = tmp_path / "out.wav"
    a, b = noise(1000, 3), noise(2500, 4)
    with WavSpeaker(out) as spk:
        spk.play(a[:333], "a")
        spk.play(a[333:], "a")
        spk.play(b, "b")
        assert spk.played_samples("a") == 1000 and spk.played_samples("b") == 2500
        assert spk.drained()
    with wave.open(str(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 24000)
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    np.testing.assert_array_equal(got, np.concatenate((a, b)))


def test_speaker_close_is_idempotent_and_header_is_valid_before_close(tmp_path):
    """The WAV header counts the samples after each play, and closing twice is fine."""
    spk = WavSpeaker(tmp_path / "out.wav")
    spk.play(noise(480), "a")
    with wave.open(str(tmp_path / "out.wav")) as w:
        assert w.getnframes() == 480
    spk.close()
    spk.close()


def test_realtime_speaker_flush_cuts_the_reply_and_reports_the_position(tmp_path):
    """A real-time WAV speaker plays 20 ms per 20 ms; flush after 0.3 s stops it near 0.3 s."""
    out = tmp_path / "out.wav"
    with WavSpeaker(out, realtime=True) as spk:
        t0 = time.monotonic()
        spk.play(noise(24000), "a")
        assert not spk.drained()
        time.sleep(0.3)
        pos = spk.flush()["a"]
        elapsed = time.monotonic() - t0
        time.sleep(0.1)
        assert spk.drained()
        assert abs(pos - elapsed * 24000) <= 2 * FRAME_SAMPLES
    with wave.open(str(out)) as w:
        written = w.getnframes()
    assert pos <= written <= pos + FRAME_SAMPLES


def test_factory_opens_the_file_backend_with_paths_resolved(tmp_path):
    """open_microphone/open_speaker build WAV devices from [audio], resolving relative paths."""
    write_wav(tmp_path / "in.wav", noise(480), 24000)
    settings = AudioSettings(backend="file", input_file="in.wav", output_file="out.wav",
                             realtime=False, volume=100)
    mic = open_microphone(settings, lambda p: tmp_path / p)
    spk = open_speaker(settings, lambda p: tmp_path / p)
    assert isinstance(mic, WavMicrophone) and isinstance(spk, WavSpeaker)
    assert spk.path == tmp_path / "out.wav" and not spk.realtime and spk.volume == 100
    spk.close()


def test_factory_names_the_empty_key(tmp_path):
    """The file backend with no input_file is a ConfigError naming [audio] input_file."""
    with pytest.raises(ConfigError, match=r"\[audio\] input_file"):
        open_microphone(AudioSettings(backend="file"), lambda p: tmp_path / p)

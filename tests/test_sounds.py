"""Earcons: the generated built-in tones and WAV files from [sounds]."""

import wave

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.config import Settings, SoundSettings, parse
from agent.errors import ConfigError
from agent.sounds import EARCONS, load_earcons, load_wav, tone


def dominant_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(x))


def write_wav(path, samples: np.ndarray, rate: int, width: int = 2) -> None:
    """samples: float -1..1, shape (n,) or (n, channels)."""
    frames = samples.reshape(len(samples), -1)
    if width == 1:
        raw = np.round(frames * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(frames * 32767).astype("<i2").tobytes()
    else:  # 24-bit little-endian
        v = np.round(frames * 8388607).astype("<i4").reshape(-1, 1).view(np.uint8).reshape(-1, 4)[:, :3]
        raw = v.tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)


@pytest.mark.parametrize("name", EARCONS)
def test_builtin_earcons_are_short_soft_edged_24k_int16(name):
    """Each built-in is int16, at most 1.5 s (cues under 0.35 s), peaks near -9 dBFS, starts and ends at silence."""
    x = tone(name)
    assert x.dtype == np.int16 and x.ndim == 1
    assert len(x) <= (1.5 if name == "ring" else 0.35) * SAMPLE_RATE
    assert 0.3 < np.abs(x).max() / 32768 < 0.4
    assert abs(int(x[0])) < 200 and abs(int(x[-1])) < 200  # no click at either end


def test_wake_rises_and_end_falls_in_pitch():
    """The wake cue goes up (E5 -> A5), the end cue comes down (A5 -> E5)."""
    wake, end = tone("wake"), tone("end")
    first, last = int(0.06 * SAMPLE_RATE), int(0.08 * SAMPLE_RATE)
    assert dominant_hz(wake[:first]) == pytest.approx(659, abs=25)
    assert dominant_hz(wake[last:]) == pytest.approx(880, abs=25)
    assert dominant_hz(end[:first]) == pytest.approx(880, abs=25)
    assert dominant_hz(end[last:]) == pytest.approx(659, abs=25)


def test_error_is_low_and_ring_is_bright_with_a_pause_to_loop_on():
    """The error buzz sits low; the ring is A5 + C#6 bursts followed by silence."""
    assert dominant_hz(tone("error")) < 400
    ring = tone("ring")
    burst = ring[: int(0.35 * SAMPLE_RATE)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(burst))
    peaks = sorted(np.argsort(spectrum)[-2:] * SAMPLE_RATE / len(burst))
    assert peaks == pytest.approx([880, 1108.7], abs=5)
    assert not ring[-int(0.6 * SAMPLE_RATE):].any()


def test_builtins_are_made_once_and_cannot_be_changed_by_a_caller():
    """tone() returns the same read-only array each time."""
    assert tone("wake") is tone("wake")
    with pytest.raises(ValueError):
        tone("wake")[0] = 1
    with pytest.raises(KeyError):
        tone("applause")


def test_load_earcons_gives_every_builtin_by_default():
    """With an empty [sounds], all five names map to the built-in tones."""
    sounds = load_earcons(Settings().sounds)
    assert set(sounds) == {"wake", "end", "error", "ring", "volume"}
    assert all(sounds[n] is tone(n) for n in EARCONS)


def test_disabled_sounds_give_no_earcons():
    """sounds.enabled = false: an empty dict (nothing to play)."""
    assert load_earcons(SoundSettings(enabled=False)) == {}


def test_a_configured_wav_replaces_the_builtin_relative_to_the_config(tmp_path):
    """sounds.wake = 'sounds/ding.wav' beside the config: loaded at 24 kHz mono; the others stay built in."""
    (tmp_path / "sounds").mkdir()
    write_wav(tmp_path / "sounds" / "ding.wav", sine(1000, 0.25, SAMPLE_RATE), SAMPLE_RATE)
    (tmp_path / "agent.toml").write_text('[sounds]\nwake = "sounds/ding.wav"\n')
    from agent.config import load
    config = load(tmp_path / "agent.toml")
    sounds = load_earcons(config.settings.sounds, config.resolve)
    written = np.round(sine(1000, 0.25, SAMPLE_RATE) * 32767).astype(np.int16)
    assert np.array_equal(sounds["wake"], written)  # 24 kHz 16-bit mono passes through sample-exact
    assert sounds["end"] is tone("end")


@pytest.mark.parametrize("rate,channels,width", [(16000, 2, 2), (44100, 1, 1), (48000, 1, 3)])
def test_wav_files_of_other_rates_widths_and_channels_become_24k_mono_int16(tmp_path, rate, channels, width):
    """16 kHz stereo, 8-bit 44.1 kHz and 24-bit 48 kHz all load as 24 kHz int16 mono of the same tone."""
    mono = sine(500, 0.5, rate)
    samples = np.stack([mono, mono], axis=1) if channels == 2 else mono
    path = tmp_path / "x.wav"
    write_wav(path, samples, rate, width)
    x = load_wav(path, "sounds.end")
    assert x.dtype == np.int16
    assert abs(len(x) - 0.5 * SAMPLE_RATE) <= 1
    assert dominant_hz(x) == pytest.approx(500, abs=3)
    assert np.abs(x).max() / 32768 == pytest.approx(0.5, abs=0.02)


def test_a_missing_sound_file_is_a_config_error_naming_the_key(tmp_path):
    """sounds.error pointing nowhere: ConfigError with the key, the path and the fix."""
    config = parse({"sounds": {"error": "nope.wav"}}, tmp_path / "agent.toml")
    expected = r"^sounds.error: sound file .*nope.wav does not exist; .*leave sounds.error empty"
    with pytest.raises(ConfigError, match=expected):
        load_earcons(config.settings.sounds, config.resolve)


def test_a_file_that_is_not_a_wav_is_a_config_error(tmp_path):
    """An MP3 (or anything else) named as a WAV is refused with the key and the fix."""
    bogus = tmp_path / "ding.mp3"
    bogus.write_bytes(b"ID3\x03\x00" + b"\0" * 100)
    with pytest.raises(ConfigError, match=r"^sounds.wake: cannot read .*ding.mp3 as a WAV file"):
        load_wav(bogus, "sounds.wake")


def test_an_overlong_sound_is_refused(tmp_path):
    """A sound over 30 s is refused (an earcon, not a song)."""
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(31 * 8000), 8000)
    with pytest.raises(ConfigError, match=r"long.wav is 31.0 s long"):
        load_wav(path, "sounds.end")

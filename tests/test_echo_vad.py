"""The speech-start detector for voice barge-in, on espeak speech against silence, noise and hum."""

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.vad import VoiceActivity
from agent.config import EchoSettings
from agent.demo import speak

PHRASES = [("Wait, I have a question.", "en-us+m3"), ("Stop, please stop talking now.", "en-gb+f3"),
           ("Hey, hold on.", "en-us"), ("No no no, that is wrong.", "de")]


def level(x: np.ndarray) -> float:
    x = x.astype(np.float64) / 32768
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


def at_level(x: np.ndarray, db: float) -> np.ndarray:
    """x scaled so that its active part (above -50 dBFS) has an RMS of db dBFS."""
    active = x[np.abs(x.astype(np.int32)) > 100]
    gain = 10 ** ((db - level(active)) / 20)
    return np.clip(np.rint(x * gain), -32768, 32767).astype(np.int16)


def onset(x: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(x.astype(np.int32)) > 0.05 * np.abs(x).max())[0])


def feed(vad: VoiceActivity, pcm: np.ndarray, gate_db: float = -np.inf) -> list[tuple[int, int]]:
    """(end sample of the firing frame, samples reported since onset) for each speech start."""
    fires = []
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        lag = vad.process(pcm[i:i + FRAME_SAMPLES], gate_db)
        if lag is not None:
            fires.append((i + FRAME_SAMPLES, lag))
    return fires


def noise(kind: str, seconds: float, db: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.maximum(1, np.arange(len(spectrum)))
    spectrum /= {"white": 1, "pink": np.sqrt(k), "brown": k}[kind]
    x = np.fft.irfft(spectrum, n)
    x *= 32768 * 10 ** (db / 20) / np.sqrt(np.mean(x * x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def phrases():
    return [speak(text, voice) for text, voice in PHRASES]


@pytest.mark.parametrize("db", [-20, -10])
def test_speech_starts_are_heard_within_barge_in_ms_plus_a_syllable(phrases, db):
    """Each phrase, from four espeak voices, starts 150-350 ms after its onset (the onset
    counted from 5 % of its peak), and the samples it reports reach back to the onset."""
    for pcm in phrases:
        speech = at_level(pcm, db)
        signal = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.int16), speech,
                                 np.zeros(SAMPLE_RATE // 2, np.int16)])
        start = SAMPLE_RATE // 2 + onset(speech)
        fires = feed(VoiceActivity(-35, 200), signal)
        assert fires, f"no speech start heard at {db} dBFS"
        end, lag = fires[0]
        assert 150 <= (end - start) * 1000 / SAMPLE_RATE <= 350, (db, end - start)
        assert end - lag <= start, "the reported speech misses its onset"


def test_quieter_speech_starts_within_the_phrase(phrases):
    """At -25 dBFS every phrase is heard before it ends (a short first word like "Stop,"
    alone may hold under 200 ms of sound over -35 dBFS: then the next words count)."""
    for pcm in phrases:
        speech = at_level(pcm, -25)
        fires = feed(VoiceActivity(-35, 200), speech)
        assert fires and fires[0][0] < len(speech)


def test_speech_under_the_threshold_is_not_a_barge_in(phrases):
    """A talker at -45 dBFS stays under the -35 dBFS threshold."""
    quiet = np.concatenate([at_level(p, -45) for p in phrases])
    assert feed(VoiceActivity(-35, 200), quiet) == []


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
@pytest.mark.parametrize("db", [-40, -25, -10])
def test_noise_never_starts_speech_steady_or_switched_on(kind, db):
    """Noise of any colour, there from the start or switching on mid-reply, is not voice:
    it is never periodic, however loud."""
    steady = noise(kind, 4, db)
    switched = np.concatenate([np.zeros(SAMPLE_RATE, np.int16), steady])
    assert feed(VoiceActivity(-35, 200), steady) == []
    assert feed(VoiceActivity(-35, 200), switched) == []


def test_a_hum_that_switches_on_is_not_speech():
    """A periodic but steady hum (100 Hz and harmonics, like mains) has no syllables."""
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    hum = sum(np.sin(2 * np.pi * 100 * h * t) / h for h in range(1, 6)) * 3000
    signal = np.concatenate([np.zeros(SAMPLE_RATE, np.int16), hum.astype(np.int16)])
    assert feed(VoiceActivity(-35, 200), signal) == []


def test_speech_over_a_noisy_room_is_heard(phrases):
    """Speech 10 dB over steady pink noise at -35 dBFS still starts."""
    speech = at_level(phrases[0], -25)
    room = noise("pink", 1 + len(speech) / SAMPLE_RATE, -35)
    mixed = room.astype(np.int32)
    mixed[SAMPLE_RATE:SAMPLE_RATE + len(speech)] += speech
    fires = feed(VoiceActivity(-35, 200), np.clip(mixed, -32768, 32767).astype(np.int16))
    assert fires and fires[0][0] > SAMPLE_RATE + onset(speech)


def test_the_echo_gate_holds_back_anything_under_it(phrases):
    """Frames under gate_db (the level echo may reach) never count as speech."""
    speech = at_level(phrases[0], -20)
    assert feed(VoiceActivity(), speech, gate_db=-10.0) == []
    assert feed(VoiceActivity(), speech, gate_db=-40.0) != []


def syllables(seconds: float) -> np.ndarray:
    """A vowel at 140 Hz whose level swings 2.5 times a second, like syllables."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    vowel = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 8))
    vowel *= 0.2 + 0.8 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return (vowel * 4000).astype(np.int16)


def test_one_start_per_run_and_again_after_a_pause():
    """A continuous voice fires once however long it lasts; after a pause longer than the
    hangover it can fire again."""
    pause = np.zeros(SAMPLE_RATE // 2, np.int16)
    fires = feed(VoiceActivity(), np.concatenate([pause, syllables(2), pause, syllables(2), pause]))
    assert len(fires) == 2, fires


def test_barge_in_ms_sets_how_much_voice_it_takes():
    """With barge_in_ms 100 or 400, a continuous voice starts 100 or 400 ms in (+- a frame)."""
    voice = np.concatenate([np.zeros(4800, np.int16), syllables(1)])
    for ms in (100, 400):
        end = feed(VoiceActivity(-35, ms), voice)[0][0]
        assert abs((end - 4800) * 1000 / SAMPLE_RATE - ms) <= 20, (ms, end)


def test_settings_and_reload():
    """Thresholds come from [echo]; configure() takes a reloaded config's."""
    vad = VoiceActivity.from_settings(EchoSettings(barge_in_threshold_db=-30.0, barge_in_ms=300))
    assert (vad.threshold_db, vad.min_speech_ms) == (-30.0, 300)
    vad.configure(EchoSettings(barge_in_threshold_db=-40.0, barge_in_ms=120))
    assert (vad.threshold_db, vad.min_speech_ms) == (-40.0, 120)
    with pytest.raises(ValueError, match="480-sample frames"):
        vad.process(np.zeros(160, np.int16))

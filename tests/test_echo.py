"""The echo canceller on synthetic echo paths (espeak through a room response), fed the way the
daemon feeds it: the playout buffer's reference ring, then the microphone frame."""

import logging
import sys

import numpy as np
import pytest

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.echo import EchoCanceller, LinearEcho, open_echo_canceller
from agent.audio.playout import ReferenceRing
from agent.audio.vad import VoiceActivity
from agent.config import EchoSettings
from agent.demo import speak

pytest.importorskip("livekit")

STORY = ("Once upon a time, a small robot lived in a lighthouse by the sea. Every night it "
         "counted the ships and polished the great lamp.")
USER = ("Wait, stop, I have a question about the robot.", "en-gb+f3")
N = FRAME_SAMPLES


def db(x) -> float:
    x = np.asarray(x, dtype=np.float64) / 32768
    return float(10 * np.log10(np.mean(x * x) + 1e-12))


def gain_for(x: np.ndarray, target_db: float) -> float:
    active = x[np.abs(x.astype(np.int32)) > 100]
    return 10 ** ((target_db - db(active)) / 20)


def room(delay_ms: float = 60, seed: int = 0) -> np.ndarray:
    """A speaker-to-microphone impulse response: the direct sound after delay_ms, then a
    reverberant tail of about 0.1 s (as loud in total as the direct sound)."""
    rng = np.random.default_rng(seed)
    d = int(delay_ms * SAMPLE_RATE / 1000)
    t = np.arange(int(0.15 * SAMPLE_RATE))
    h = np.zeros(d + len(t))
    h[d] = 1.0
    h[d:] += rng.standard_normal(len(t)) * np.exp(-t / (0.015 * SAMPLE_RATE)) * 0.2
    return h


def echo_of(far: np.ndarray, h: np.ndarray, echo_db: float) -> np.ndarray:
    e = np.convolve(far.astype(np.float64), h)[:len(far)]
    active = e[np.abs(e) > 100]
    return e * 10 ** ((echo_db - db(active)) / 20)


class Path:
    """Drive a canceller as the daemon does: each 20 ms, the device writes a played block into
    the reference ring, then the microphone frame arrives."""

    def __init__(self, **options):
        self.ring = ReferenceRing(2 * SAMPLE_RATE)
        self.ec = EchoCanceller(self.ring, **options)
        self.vad = VoiceActivity()

    def run(self, far: np.ndarray, mic: np.ndarray, listen: bool = False):
        clean, residual, gates, fires = [], [], [], []
        mic = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)
        for k in range(len(mic) // N):
            self.ring.write(far[k * N:(k + 1) * N])
            clean.append(self.ec.process(mic[k * N:(k + 1) * N]))
            residual.append(self.ec.residual.copy())
            gates.append(self.ec.gate_db)
            if listen and self.vad.process(self.ec.residual, self.ec.gate_db) is not None:
                fires.append((k + 1) * N)
        return np.concatenate(clean), np.concatenate(residual), np.array(gates), fires


@pytest.fixture(scope="module")
def voices():
    story = speak(STORY)
    user = speak(*USER)
    return story, user


def scene(story, user, *, echo_db=-20.0, user_db=-26.0, user_at=None, delay_ms=60, tail_s=2.0):
    """Far end (the story), and the microphone: its echo through a room, plus the user from
    sample user_at (None: no user). Whole frames."""
    n = len(story) + int(tail_s * SAMPLE_RATE)
    n += -n % N
    far = np.zeros(n, np.int16)
    far[:len(story)] = story
    mic = echo_of(far, room(delay_ms), echo_db)
    near = np.zeros(n)
    if user_at is not None:
        m = min(len(user), n - user_at)
        near[user_at:user_at + m] = user[:m] * gain_for(user, user_db)
    return far, mic + near, near


def test_removes_a_room_echo_by_35_db_and_keeps_the_user(voices):
    """Echo of a story through a room (60 ms, reverberant tail) loses >= 35 dB after the first
    second; the user talking after the story is kept within 3 dB."""
    story, user = voices
    at = len(story) + SAMPLE_RATE // 2
    far, mic, near = scene(story, user, user_at=at, tail_s=0.5 + len(user) / SAMPLE_RATE + 0.2)
    clean, _, _, _ = Path().run(far, mic)
    echo = slice(SAMPLE_RATE, len(story))
    assert db(mic[echo]) - db(clean[echo]) >= 35
    talk = slice(at, at + len(user))
    assert abs(db(clean[talk]) - db(near[talk])) <= 3


def test_the_linear_model_keeps_the_user_over_a_louder_echo(voices):
    """With the user 6 dB under the echo, WebRTC's output loses them (its suppressor), while the
    linear model's residual keeps them within 3 dB; over echo alone it stays under its gate."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=0.0)
    path.run(far, mic)  # a first reply: the model learns the room
    at = 3 * SAMPLE_RATE
    far, mic, near = scene(story, user, user_at=at, tail_s=0.0)
    clean, residual, gates, _ = path.run(far, mic)
    talk = slice(at, at + len(user))
    assert abs(db(residual[talk]) - db(near[talk])) <= 3
    # why voice barge-in listens to the residual: most of the user's frames lose > 10 dB
    frames = [(db(near[i:i + N]), db(clean[i:i + N])) for i in range(at, at + len(user) - N, N)]
    losses = [n - c for n, c in frames if n > -40]
    assert np.median(losses) > 10, np.median(losses)
    frames = residual[:at].reshape(-1, N)
    levels = np.array([db(f) for f in frames])
    assert np.all(levels < np.maximum(gates[:len(frames)], -35)), "residual echo over the gate"


def test_gate_open_when_nothing_plays_and_lowered_as_the_model_learns(voices):
    """gate_db: -inf when nothing played for the model's length; while playing, over the
    microphone's level with an untrained model, then down to 12 dB under it as it learns."""
    story, user = voices
    path = Path()
    silence = np.zeros(SAMPLE_RATE, np.int16)
    path.run(silence, silence.astype(float))
    assert path.ec.gate_db == -np.inf
    far, mic, _ = scene(story, user, tail_s=0.0)
    _, _, gates, _ = path.run(far, mic)
    mic_db = np.array([db(mic[k * N:(k + 1) * N]) for k in range(len(gates))])
    lead = gates - mic_db
    assert np.all(lead[:10] >= LinearEcho.MARGIN_DB - 0.5)  # nothing passes an untrained model
    first = lambda cond: np.flatnonzero(cond)[0] * N / SAMPLE_RATE  # noqa: E731
    assert first(lead <= 0) < 4, "should let a user louder than the echo through within 4 s"
    assert first(lead <= -LinearEcho.NEAR_UNDER_MIC_DB + 0.01) < 9  # trusted


@pytest.mark.parametrize("echo_db", [-24.0, -18.0, -12.0])
def test_echo_alone_never_starts_speech_and_the_user_does(voices, echo_db):
    """The voice detector on the residual, gated: a loud story's echo from a cold start is
    never speech; the same reply with the user 6 dB under its echo is heard within 300 ms."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, echo_db=echo_db, tail_s=0.0)
    assert path.run(far, mic, listen=True)[3] == []
    at = 3 * SAMPLE_RATE
    far, mic, near = scene(story, user, echo_db=echo_db, user_db=echo_db - 6, user_at=at, tail_s=0.0)
    path.vad.reset()
    fires = path.run(far, mic, listen=True)[3]
    onset = at + int(np.flatnonzero(np.abs(near[at:]) > 0.05 * np.abs(near).max())[0])
    assert fires and fires[0] > onset, fires
    assert (fires[0] - onset) * 1000 / SAMPLE_RATE <= 300


@pytest.mark.parametrize("noise_db", [-50.0, -45.0])
def test_a_rooms_noise_does_not_keep_a_model_that_fits_from_being_trusted(voices, noise_db):
    """A room's steady noise, which no model removes, is not counted against the model: after a
    realignment onto the same path it is trusted again within 0.5 s and stays so (it was
    trusted on 11 % and 0 % of the reply when the noise counted as echo left behind)."""
    story, user = voices
    far, mic, _ = scene(story, user, tail_s=0.0)
    mic = mic + np.random.default_rng(1).standard_normal(len(mic)) * 32768 * 10 ** (noise_db / 20)
    model = LinearEcho()

    def reply() -> np.ndarray:
        trusted = []
        for k in range(len(far) // N):
            model.process(far[k * N:(k + 1) * N].astype(np.float64), mic[k * N:(k + 1) * N])
            trusted.append(model.trusted)
        return np.array(trusted)

    reply(), reply()  # the first replies: the path is learnt
    model.realign()
    model.shift_path(0)
    trusted = reply()
    assert trusted[:25].any() and trusted[25:].mean() >= 0.9, trusted.mean()


@pytest.mark.parametrize("noise_db", [-55.0, -45.0])
def test_in_a_noisy_room_echo_alone_never_starts_speech_and_the_user_does(voices, noise_db):
    """The room's noise in the microphone: the echo of replies is still never speech, and the
    user 6 dB under the echo on a later reply is heard within 300 ms."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=0.0)
    noise = np.random.default_rng(2).standard_normal(len(mic)) * 32768 * 10 ** (noise_db / 20)
    for _ in range(2):
        assert path.run(far, mic + noise, listen=True)[3] == []
    at = 3 * SAMPLE_RATE
    far, mic, near = scene(story, user, user_db=-26.0, user_at=at, tail_s=0.0)
    path.vad.reset()
    fires = path.run(far, mic + noise, listen=True)[3]
    onset = at + int(np.flatnonzero(np.abs(near[at:]) > 0.05 * np.abs(near).max())[0])
    assert fires and fires[0] > onset, fires
    assert (fires[0] - onset) * 1000 / SAMPLE_RATE <= 300


def test_an_echo_path_jump_is_not_taken_for_the_user(voices):
    """The device drops 20 ms (an underrun: the echo now comes later than the model knows): its
    echo, no longer removed by the model, never starts speech while the model relearns; the
    user talking over the reply afterwards still does."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=0.0)
    path.run(far, mic)  # a first reply: the model learns the room
    late = np.r_[np.zeros(N), room(60)]
    e1 = np.convolve(far.astype(np.float64), room(60))[:len(far)]
    e2 = np.convolve(far.astype(np.float64), late)[:len(far)]
    gain = 10 ** ((-20 - db(e1[np.abs(e1) > 100])) / 20)
    jump = 2 * SAMPLE_RATE
    jumped = np.r_[e1[:jump], e2[jump:]] * gain
    path.vad.reset()
    assert path.run(far, jumped, listen=True)[3] == []
    at = 3 * SAMPLE_RATE
    near = np.zeros(len(far))
    near[at:at + len(user)] = user * gain_for(user, -20)
    path.vad.reset()
    fires = path.run(far, e2 * gain + near, listen=True)[3]
    assert fires and 0 < (fires[0] - at) * 1000 / SAMPLE_RATE <= 400, fires


def drive(ec: EchoCanceller, ring: ReferenceRing, far, mic, *, preplay: int = 0,
          stall: range = range(0), seed: int = 3) -> np.ndarray:
    """Tick by 20 ms: the device plays a block per tick (give or take one: its own phase)
    after `preplay` blocks of silence played before the microphone started; frame k is
    captured at tick k, and the conversation thread processes all captured frames each tick
    except during `stall` (then all that waited)."""
    rng = np.random.default_rng(seed)
    ring.write(np.zeros(preplay * N, np.int16))
    frames = len(mic) // N
    written, done, clean = 0, 0, []
    for k in range(frames):
        target = min(frames, k + 1 + int(rng.integers(-1, 2)))
        while written < max(target, 1):
            ring.write(far[written * N:(written + 1) * N])
            written += 1
        if k in stall:
            continue
        while done <= k:
            clean.append(ec.process(mic[done * N:(done + 1) * N]))
            done += 1
    return np.concatenate(clean)


def test_alignment_holds_through_jitter_a_stall_and_a_late_start(voices):
    """Reference blocks and microphone frames arriving out of phase, the first frame coming
    when 0.8 s have played, and a 0.5 s stall of the conversation thread: the pairing keeps
    the far end ahead of its echo (WebRTC's output loses >= 35 dB of echo after the first
    second, the linear model learns) and nothing starts over."""
    story, user = voices
    far, mic, _ = scene(story, user, tail_s=0.0)
    mic = np.clip(np.rint(mic), -32768, 32767).astype(np.int16)
    ring = ReferenceRing(2 * SAMPLE_RATE)
    ec = EchoCanceller(ring)
    frames = len(mic) // N
    clean = drive(ec, ring, far, mic, preplay=40, stall=range(frames // 2, frames // 2 + 25))
    assert ec.restarts == 0
    echo = slice(2 * SAMPLE_RATE, len(story))
    assert db(mic[echo]) - db(clean[echo]) >= 35
    assert ec.model.erle_db >= 10


def test_frames_in_frames_out_at_a_fixed_delay():
    """Each 480-sample frame gives a new 480-sample frame; while something plays, the
    microphone comes through ec.delay samples late (the resamplers and WebRTC's own delay,
    under 40 ms)."""
    ring = ReferenceRing(SAMPLE_RATE)
    rng = np.random.default_rng(0)
    mic = (rng.standard_normal(2 * SAMPLE_RATE) * 3000).astype(np.int16)
    out = []
    with EchoCanceller(ring, noise_suppression=False) as ec:
        for k in range(len(mic) // N):
            ring.write((rng.standard_normal(N) * 300).astype(np.int16))  # audible, unrelated
            frame = mic[k * N:(k + 1) * N]
            result = ec.process(frame)
            assert result.shape == (N,) and result.dtype == np.int16 and result is not frame
            out.append(result)
        assert ec.active and ec.rested == 0
    out = np.concatenate(out).astype(float)
    seg = slice(SAMPLE_RATE, SAMPLE_RATE + 4800)
    corr = [np.dot(out[seg], mic[seg.start - lag:seg.stop - lag]) for lag in range(2 * N)]
    assert int(np.argmax(corr)) == ec.delay
    assert ec.delay * 1000 / SAMPLE_RATE < 40, ec.delay
    with pytest.raises(ValueError, match="480-sample frames"):
        EchoCanceller(ring).process(np.zeros(160, np.int16))


def test_close_is_idempotent_and_frames_then_pass_through():
    ring = ReferenceRing(SAMPLE_RATE)
    ec = EchoCanceller(ring)
    ec.close()
    ec.close()
    frame = np.arange(N, dtype=np.int16)
    assert np.array_equal(ec.process(frame), frame)


class _Speaker:
    def __init__(self, reference):
        self.reference = reference


def _one_record(caplog) -> logging.LogRecord:
    records = [r for r in caplog.records if r.name == "agent.audio.echo"]
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


def test_factory_is_off_when_disabled_or_without_a_reference(caplog):
    """[echo] enabled = false, or a speaker that reports nothing it plays: None, one log line."""
    caplog.set_level(logging.INFO, logger="agent.audio.echo")
    assert open_echo_canceller(EchoSettings(enabled=False), _Speaker(ReferenceRing(480))) is None
    assert "enabled = false" in _one_record(caplog).getMessage()
    caplog.clear()
    assert open_echo_canceller(EchoSettings(), _Speaker(None)) is None
    assert "reports nothing it plays" in _one_record(caplog).getMessage()


def test_factory_is_off_without_the_livekit_wheel(caplog, monkeypatch):
    """No importable livekit: None and one warning naming the package and the setting."""
    caplog.set_level(logging.INFO, logger="agent.audio.echo")
    monkeypatch.setitem(sys.modules, "livekit", None)  # what a missing wheel looks like
    assert open_echo_canceller(EchoSettings(), _Speaker(ReferenceRing(480))) is None
    record = _one_record(caplog)
    assert record.levelno == logging.WARNING
    assert "livekit" in record.getMessage() and "[echo] enabled = false" in record.getMessage()


def test_factory_opens_a_canceller_on_the_speakers_reference(caplog):
    caplog.set_level(logging.INFO, logger="agent.audio.echo")
    ring = ReferenceRing(SAMPLE_RATE)
    ring.write(np.ones(4800, np.int16))  # played before: not the far end of what comes
    with open_echo_canceller(EchoSettings(delay_ms=80), _Speaker(ring)) as ec:
        assert isinstance(ec, EchoCanceller) and ec.delay_ms == 80
        ec.process(np.zeros(N, np.int16))
        assert ring.available == 0 and ec.far_samples == N  # paired with the newest block
    assert "echo cancellation on" in _one_record(caplog).getMessage()

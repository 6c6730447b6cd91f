"""The echo canceller works only while there is something to cancel (issue 15): with nothing
played it passes frames through at the delay processing adds, so nothing is lost or repeated
when it stops or starts, and what it learnt holds across the pause."""

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.audio.echo import HOLD_S, EchoCanceller, Realigner, _delayed
from agent.audio.playout import ReferenceRing
from test_echo import N, Path, db, echo_of, room, scene

pytest.importorskip("livekit")


def _noise(n: int, seed: int, amp: float = 3000.0) -> np.ndarray:
    return np.clip(np.random.default_rng(seed).standard_normal(n) * amp, -32768, 32767) \
        .astype(np.int16)


def _run(ec: EchoCanceller, ring: ReferenceRing, far: np.ndarray, mic: np.ndarray):
    out, active = [], []
    for k in range(len(mic) // N):
        ring.write(far[k * N:(k + 1) * N])
        out.append(ec.process(mic[k * N:(k + 1) * N]))
        active.append(ec.active)
    return np.concatenate(out), np.array(active)


def _lag(out: np.ndarray, x: np.ndarray, window: slice, most: int = 1200) -> int:
    """The lag (0..most samples) at which x best matches out over window."""
    seg = out[window].astype(np.float64)
    scores = [np.dot(seg, x[window.start - lag:window.stop - lag].astype(np.float64))
              for lag in range(most)]
    return int(np.argmax(scores))


def test_with_nothing_played_frames_pass_unprocessed_at_the_processing_delay():
    """Silence played: no frame is processed, and each comes out exactly as captured, as late
    as processing would make it (ec.delay samples: the resamplers and WebRTC's own delay)."""
    ring = ReferenceRing(SAMPLE_RATE)
    with EchoCanceller(ring) as ec:
        mic = _noise(3 * SAMPLE_RATE, 1)
        out, active = _run(ec, ring, np.zeros(len(mic), np.int16), mic)
        assert ec.rested == ec.frames == len(mic) // N and not active.any()
        d = ec.delay
        assert 0 < d < 2 * N
        assert np.array_equal(out[d:], mic[:len(mic) - d]) and not out[:d].any()
        assert ec.gate_db == -np.inf and np.array_equal(ec.residual, mic[-N:])


@pytest.mark.parametrize("noise_suppression", [True, False])
def test_processing_starts_with_the_first_audible_block_and_stops_after_the_echo_tail(
        noise_suppression):
    """Frames are processed from the first block played above -60 dBFS until HOLD_S after the
    last one; across both switches the output stays exactly ec.delay behind the microphone (no
    sample lost or repeated), and outside them it is the microphone itself."""
    ring = ReferenceRing(SAMPLE_RATE)
    ec = EchoCanceller(ring, noise_suppression=noise_suppression)
    frames = 300
    far = np.zeros(frames * N, np.int16)
    far[100 * N:150 * N] = _noise(50 * N, 2, 300)  # -40 dBFS, nothing like the microphone
    far[120 * N:121 * N] = 0                       # a pause shorter than the tail
    mic = _noise(frames * N, 3)
    out, active = _run(ec, ring, far, mic)
    hold = int(HOLD_S * SAMPLE_RATE / N)
    assert not active[:100].any() and active[100:150 + hold].all()
    assert not active[150 + hold + 1:].any()
    assert ec.rested == frames - (50 + hold)
    d = ec.delay
    shifted = np.r_[np.zeros(d, np.int16), mic[:-d]]
    for first, last in ((95, 105), (100, 140), (145 + hold, 155 + hold)):
        assert _lag(out, shifted, slice(first * N, last * N)) == 0, (first, last)
    rest = slice((150 + hold + 1) * N + d, frames * N)
    assert np.array_equal(out[rest], shifted[rest])


def test_what_the_canceller_learnt_holds_across_a_long_pause(voices):
    """Two replies (the models learn the room), 30 s with nothing played (frames pass through
    unprocessed), the same reply again: WebRTC removes as much echo from its first second as
    from the second reply's, and the linear model is trusted from its first block (the voice
    gate 12 dB under the microphone: a user that much quieter than the echo is heard)."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=1.0)
    first = slice(int(0.1 * SAMPLE_RATE), SAMPLE_RATE)
    path.run(far, mic)
    clean, _, _, _ = path.run(far, mic)
    erle_before = db(mic[first]) - db(clean[first])
    assert erle_before >= 35 and path.ec.model.trusted
    silence = np.zeros(30 * SAMPLE_RATE, np.int16)
    rested = path.ec.rested
    path.run(silence, _noise(len(silence), 4, 10).astype(float))  # a quiet room
    assert path.ec.rested - rested >= len(silence) // N - int(HOLD_S * SAMPLE_RATE / N) - 1
    clean, _, gates, _ = path.run(far, mic)
    erle_after = db(mic[first]) - db(clean[first])
    assert erle_after >= erle_before - 3, (erle_before, erle_after)
    loud = [k for k in range(first.start // N, first.stop // N) if db(mic[k * N:(k + 1) * N]) > -40]
    leads = [gates[k] - db(mic[k * N:(k + 1) * N]) for k in loud]
    assert len(loud) > 10 and max(leads) <= -12 + 0.01, leads


@pytest.mark.parametrize("later", [168, -120, 480, 2280, 480.5, -119.5])
def test_a_stream_that_ran_again_finds_its_echo_and_the_gate_holds_until_then(voices, later):
    """The speaker's stream stops (nothing written for 3 s: the far end reads as silence, the
    pairing does not drift) and runs again with its echo `later` samples later or earlier than
    before (a restart buffers its own way: up to 99 ms measured on a null sink, in whole samples
    of the sound server's 48 kHz: half samples here). The gate is shut from the restart while
    the canceller finds the shift, to the half sample; with it both models
    have their old path back: the path fits so well that the search ends after 0.3 s of
    reply and its echo's 0.25 s, and the gate opens then; no speech start over the reply, and
    WebRTC removes >= 50 dB after its first second."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=1.0)
    path.run(far, mic)
    path.run(far, mic)
    assert path.ec.model.trusted
    path.ring.pause()
    shifts = path.ec.shifts
    quiet = _noise(3 * SAMPLE_RATE, 5, 10)
    for k in range(len(quiet) // N):
        path.ec.process(quiet[k * N:(k + 1) * N])
    assert path.ec.shifts == shifts and path.ec.realigns == 0
    d = later
    h = _delayed(np.r_[room(60), np.zeros(3000)], d)  # (room(60) starts with 60 ms of nothing)
    lead = 15 * N  # the reply starts with 0.3 s of silence (a restarted stream's own lead)
    far = np.r_[np.zeros(lead, np.int16), far]
    later = echo_of(far, h, -20.0)
    path.vad.reset()
    clean, _, gates, fires = path.run(far, later, listen=True)
    assert path.ec.realigns == 1 and path.ring.runs == 2
    assert path.ec.realigned_by == [d]
    assert fires == []
    first_loud = next(k for k in range(len(far) // N) if db(far[k * N:(k + 1) * N]) > -60)
    # the block (from the first audible one, 0) whose frame ends the early search: the 15th
    # audible block, then the 0.25 s its echo may take
    found = int(Realigner.EARLY_S * SAMPLE_RATE / N) - 1 + int(Realigner.AFTER_S * SAMPLE_RATE / N) - 1
    assert np.all(gates[:first_loud + found] == np.inf)  # from the restart: no echo taken for a voice
    opened = np.flatnonzero(np.isfinite(gates[first_loud:]))
    assert len(opened) and opened[0] == found, opened[:1]  # found early: trusted at once
    tail = slice(lead + SAMPLE_RATE, lead + len(story))
    assert db(later[tail]) - db(clean[tail]) >= 50


def test_a_canceller_that_never_learnt_a_path_learns_from_the_first_block_after_a_restart(voices):
    """A daemon's first replies come after restarts of the stream (each wake, each rest):
    with no path learnt there is nothing to find again, so the model learns from the first
    block played, its gate shut from the restart to that block and graded from then (it
    opens as far as the model shows it removes: 2 s into this story it lets a voice 5 dB
    over the echo through, 3.5 s in one as loud as the echo, where a gate shut until the
    model is trusted let none through before 3.7 s). A search for an empty path took the
    first 2.5 s of every reply, learning nothing meanwhile: short replies taught it nothing."""
    story, user = voices
    far, mic, _ = scene(story, user, tail_s=1.0)
    lead = 10 * N
    far, mic = np.r_[np.zeros(lead, np.int16), far], np.r_[np.zeros(lead), mic]
    path = Path()
    path.ring.pause()
    path.ec.process(np.zeros(N, np.int16))
    _, _, gates, _ = path.run(far, mic)
    assert path.ec.realigns == 1 and path.ec.realigned_by == [] and path.ec.model.learnt
    first_loud = next(k for k in range(len(far) // N) if db(far[k * N:(k + 1) * N]) > -60)
    assert np.all(gates[:first_loud] == np.inf)  # (an echo before its far end is no voice)
    mic_db = np.array([db(mic[k * N:(k + 1) * N]) for k in range(len(gates))])
    later = first_loud + 2 * SAMPLE_RATE // N
    assert np.median(gates[later:later + 25] - mic_db[later:later + 25]) <= 6.0


def test_a_path_moved_back_and_forth_by_jitter_is_the_path_it_was(voices):
    """Late blocks then trims (jitter at a restart: 5 frames with no far block, then 5 far
    blocks with no frame) move the pairing 5 blocks and back: the learnt path is the same to
    the last weight (it once lost its direct sound, 60 ms in, over the first moves)."""
    story, user = voices
    path = Path()
    far, mic, _ = scene(story, user, tail_s=1.0)
    path.run(far, mic)
    model = path.ec.model
    before = model.impulse()
    silence = np.zeros(N, np.int16)
    for _ in range(5):
        model.no_far(silence)
    assert np.abs(model.impulse() - before).max() > 0.1 * np.abs(before).max()
    for _ in range(5):
        model.far_only(silence)
    assert np.allclose(model.impulse(), before, atol=1e-12)


def _search(path: np.ndarray, far: np.ndarray, mic: np.ndarray) -> tuple[Realigner, int]:
    """A Realigner with the learnt path `path`, fed the reply from its start: it, and the
    blocks it took."""
    finder = Realigner(lambda: path)
    for k in range(len(far) // N):
        finder.add(far[k * N:(k + 1) * N].astype(np.float64), mic[k * N:(k + 1) * N], True)
        if finder.done:
            return finder, k + 1
    return finder, len(far) // N


def test_the_shift_found_is_the_one_the_learnt_path_explains(voices):
    """The echo 50 ms later than the path learnt: found to the sample from the first window,
    the path shifted so explaining over 30 dB of the microphone. A path that explains
    nothing at any shift (as one pushed out of the model: only tiny random weights left, seen
    in the daemon) ends the search after that one window with no shift, so the model learns
    from then on (the highest correlation peak, taken by a peak-height test, was a shift
    of 0)."""
    story, _ = voices
    far = story[:3 * SAMPLE_RATE]
    far = far[:len(far) // N * N]
    h = np.r_[room(60), np.zeros(int(0.3 * SAMPLE_RATE) - len(room(60)))]
    d = SAMPLE_RATE // 20
    mic = echo_of(far, np.r_[np.zeros(d), h], -20.0) + _noise(len(far), 6, 3)
    finder, took = _search(h, far, mic)
    window = int((Realigner.FIND_S + Realigner.AFTER_S) * SAMPLE_RATE / N)
    assert finder.shift == d and finder.fit_db > 30 and took <= window + 1, (finder.shift, took)
    junk = np.random.default_rng(3).standard_normal(len(h)) * 0.002
    finder, took = _search(junk, far, mic)
    assert finder.done and finder.shift is None and took <= window + 1, (finder.shift, took)


@pytest.fixture(scope="module")
def voices():
    from test_echo import STORY, USER
    from agent.demo import speak
    return speak(STORY), speak(*USER)

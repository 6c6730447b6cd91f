"""The voice-activity gate in front of the wake model: the same detections, the model asleep in silence."""

import shutil

import numpy as np
import pytest
from wake_corpus import count_steps, pink_noise, speech, with_noise  # noqa: F401 (speech: fixture)

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.wake.gate import MAX_STEPS_PER_FRAME, VoiceGate, load_vad
from agent.wake.openwakeword import OpenWakeWordDetector
from agent.wake.settings import WakeSettings

pytestmark = [pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng"),
              pytest.mark.skipif(load_vad() is None, reason="needs webrtcvad")]

# Wake words (with and without the pause), sound-alikes and everyday speech, separated by pauses
# shorter than the replay ring (exact replay), longer than it (a fresh start) and about the
# model's context, in a quiet room (pink noise at -60 dBFS).
CORPUS = [("hey jarvis, what time is it", "en-us+f2", 150, 0.3),
          ("what time is it", "en-us", 160, 8.0),
          ("hey jarvis what time is it", "en-us+f4", 150, 4.0),
          ("hey travis, turn on the kitchen lights please", "en-gb", 150, 12.0),
          ("hey jarvis, what time is it", "en-gb", 130, 0.6),
          ("harvest the jars of jam in the service area", "en+m3", 140, 2.2),
          ("hey jarvis, turn on the kitchen lights", "en+m5", 170, 6.0),
          ("it is ten past three in the afternoon", "en-us", 175, 1.0),
          ("hey jarvis", "en-us+f3", 130, 3.0)]


@pytest.fixture(scope="module")
def corpus(speech):
    rate = SAMPLE_RATE
    parts = []
    for text, voice, wpm, pause in CORPUS:
        parts += [np.zeros(int(pause * rate)), speech(text, voice, wpm).astype(np.float64)]
    parts.append(np.zeros(3 * rate))
    clean = np.concatenate(parts)
    room = pink_noise(len(clean), 11)
    room *= 32768 * 10 ** (-60 / 20) / room.std()
    return np.clip(np.round(clean + room), -32768, 32767).astype(np.int16)


def events(audio: np.ndarray, *, gated: bool, threshold: float, refractory_s: float):
    """Every detection as (model, score, stream position, frame), the share of steps the model
    ran, and the most model steps one process() call ran (counted at the model, not timed)."""
    with OpenWakeWordDetector("hey_jarvis", threshold=threshold, refractory_s=refractory_s,
                              vad_gate=gated) as detector:
        assert detector.gated == gated
        ran = count_steps(detector)
        hits, most = [], 0
        for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            ran[0] = 0
            hit = detector.process(audio[i:i + FRAME_SAMPLES])
            most = max(most, ran[0])
            if hit is not None:
                hits.append((hit.model, hit.score, hit.sample_offset, hit.frame_index))
        gate = detector._gate
        share = gate.steps_run / gate.steps_seen if gate is not None else 1.0
    return hits, share, most


def same_detections(plain, gated, catch_up_frames: int) -> None:
    """Same model, score and stream position, in the same order; each reported on its own frame or,
    if the model computed it while catching up, fewer than catch_up_frames frames later."""
    assert [h[:3] for h in gated] == [h[:3] for h in plain]
    late = [g[3] - p[3] for p, g in zip(plain, gated)]
    assert all(0 <= d < catch_up_frames for d in late), late


def test_gated_and_ungated_detections_are_identical_on_a_corpus(corpus):
    """At the default threshold the gate changes no detection: same model, score, position and frame."""
    plain, _, _ = events(corpus, gated=False, threshold=0.5, refractory_s=2.0)
    gated, _, _ = events(corpus, gated=True, threshold=0.5, refractory_s=2.0)
    assert len(plain) >= 4  # the wake words in the corpus are heard
    assert gated == plain


def test_every_score_the_model_reaches_is_the_same_with_the_gate(corpus):
    """Each 80 ms window scoring over 0.01 scores the same, bit for bit, gated or not (any threshold
    gives the same detections), reported at most a catch-up later, while the gated model sleeps
    through the pauses."""
    plain, _, _ = events(corpus, gated=False, threshold=0.01, refractory_s=0.0)
    gated, share, _ = events(corpus, gated=True, threshold=0.01, refractory_s=0.0)
    assert len(plain) > 20
    same_detections(plain, gated, VoiceGate(None, step_samples=1280, context_steps=26).catch_up_frames)
    assert share < 0.9  # it slept through the pauses (replays included, it ran on under 90 % of the steps)


def test_no_frame_runs_more_than_a_few_model_steps_when_the_voice_starts(corpus):
    """The replay of up to 33 steps when a voice starts after a pause is spread over the frames that
    follow: no process() call runs the model more than MAX_STEPS_PER_FRAME times (counted)."""
    _, _, plain_most = events(corpus, gated=False, threshold=0.5, refractory_s=2.0)
    _, _, gated_most = events(corpus, gated=True, threshold=0.5, refractory_s=2.0)
    assert plain_most == 1  # one 80 ms step every 4 frames
    assert gated_most == MAX_STEPS_PER_FRAME  # the replays ran, a bounded share at a time


def test_in_a_noisy_room_the_gate_lets_every_detection_through(speech):
    """Wake words 10 dB over pink noise (the wake corpus's worst): the gate's floor, which keeps
    steady noise out, still lets the voice wake the model for every detection, unchanged."""
    rate, parts = SAMPLE_RATE, []
    for text, voice, wpm, pause in CORPUS[::2]:
        parts += [np.zeros(int(pause * rate)), speech(text, voice, wpm).astype(np.float64)]
    noisy = with_noise(np.concatenate(parts + [np.zeros(3 * rate)]).astype(np.int16), 10.0, 3)
    plain, _, _ = events(noisy, gated=False, threshold=0.5, refractory_s=2.0)
    gated, _, _ = events(noisy, gated=True, threshold=0.5, refractory_s=2.0)
    assert len(plain) >= 2
    same_detections(plain, gated, VoiceGate(None, step_samples=1280, context_steps=26).catch_up_frames)


def test_in_a_quiet_room_the_gated_model_hardly_runs():
    """Room noise at -60 dBFS: once webrtcvad has settled (its first 2 s), the model runs on under 2 %
    of the steps (webrtcvad alone calls some of the noise's louder chunks voice: only a chunk over
    the room's floor counts), and nothing fires."""
    room = pink_noise(12 * SAMPLE_RATE, 5)
    room = np.round(room * 32768 * 10 ** (-60 / 20) / room.std()).astype(np.int16)
    frames = [room[i:i + FRAME_SAMPLES] for i in range(0, len(room) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
    settle = 2 * SAMPLE_RATE // FRAME_SAMPLES
    with OpenWakeWordDetector("hey_jarvis", vad_gate=True) as detector:
        hits = [detector.process(f) for f in frames[:settle]]
        gate = detector._gate
        run, seen = gate.steps_run, gate.steps_seen
        hits += [detector.process(f) for f in frames[settle:]]
        share = (gate.steps_run - run) / (gate.steps_seen - seen)
    assert not any(hits)
    assert gate.steps_seen - seen >= 120 and share < 0.02


class Scripted:
    """webrtcvad's interface: voice in the steps listed (each step's samples hold its index)."""

    def __init__(self, voiced):
        self.voiced = voiced

    def is_speech(self, chunk, rate):
        return int(np.frombuffer(chunk, np.int16)[0]) in self.voiced

    def step(self, i: int, samples: int = 1280) -> np.ndarray:
        """Step i: each chunk's first sample is i; a voiced step is loud (a voice, not noise
        webrtcvad took for one: the gate counts voice only over the room's floor)."""
        pcm = np.full(samples, i, np.int16)
        if i in self.voiced:
            pcm[1::2] = 8000
        return pcm


def test_a_replayed_step_counts_only_when_its_whole_context_was_replayed():
    """After a pause longer than the ring, the oldest context - 1 replayed steps are marked as not counting."""
    step = 1280
    vad = Scripted({0, 40})
    gate = VoiceGate(vad, step_samples=step, context_steps=3, ring_steps=8, per_frame=100)
    runs = []
    for i in range(41):
        gate.admit(i, vad.step(i))
        runs.append(gate.take())
    # step 0's voiced chunks stay in the 10-chunk window through step 2; then the context of 3 steps
    assert [len(r) for r in runs[:6]] == [1] * 6 and runs[6] == []
    replay = runs[40]
    assert [i for i, _, _ in replay] == list(range(32, 41))
    assert [counts for _, _, counts in replay] == [False, False] + [True] * 7
    assert all(int(pcm[0]) == i for i, pcm, _ in replay)  # the ring kept each step's own samples


def test_the_replay_is_caught_up_in_bounded_steps_per_frame_and_then_runs_in_step():
    """A voice after a long pause: every step since the pause (the ring's 32 and the waking one) runs
    once, in stream order, at most 2 a frame, all within catch_up_frames frames of the wake; after
    that each new step runs on the frame that brought it."""
    step, frames_per_step = 1280, 4
    vad = Scripted(set(range(100, 140)))
    gate = VoiceGate(vad, step_samples=step, context_steps=26)
    assert gate.catch_up_frames == 19  # the docstring's 360 ms: 18 frames after the waking one
    ran: list[tuple[int, int]] = []  # (frame, stream index)
    for frame in range(200 * frames_per_step):
        if frame % frames_per_step == 0:
            i = frame // frames_per_step
            gate.admit(i, vad.step(i))
        taken = gate.take()
        assert len(taken) <= MAX_STEPS_PER_FRAME
        assert all(int(pcm[0]) == i for i, pcm, _ in taken)
        ran += [(frame, i) for i, _, _ in taken]
    wake = 100 * frames_per_step
    # the last voiced step is 139, the window of 10 chunks still holds 3 of them in step 141's
    # first chunk; then the model runs its context of 26 steps
    assert [i for _, i in ran] == list(range(100 - 32, 141 + 26 + 1))
    assert ran[0][0] == wake and max(f for f, i in ran if i <= 100) < wake + gate.catch_up_frames
    caught = [(f, i) for f, i in ran if f >= wake + gate.catch_up_frames]
    assert caught and all(f == i * frames_per_step for f, i in caught)
    assert gate.steps_run == len(ran)


def test_a_reset_drops_the_replay_still_to_run():
    """A reset while the model catches up: nothing of the old stream runs after it."""
    step = 1280
    vad = Scripted({40})
    gate = VoiceGate(vad, step_samples=step, context_steps=26)
    for i in range(41):
        gate.admit(i, vad.step(i))
    assert len(gate.take()) == MAX_STEPS_PER_FRAME
    gate.reset()
    assert gate.take(frames=100) == []
    gate.admit(0, vad.step(40))  # voiced: runs at once, and counts
    assert [(i, counts) for i, _, counts in gate.take()] == [(0, True)]


def test_the_setting_turns_the_gate_on_by_default_and_off_when_asked():
    """[wake] vad_gate is on by default; vad_gate = false runs the model on every step."""
    from agent.wake import open_detector
    for settings, gated in ((WakeSettings(), True), (WakeSettings(vad_gate=False), False)):
        detector = open_detector(settings)
        try:
            assert detector.gated is gated
        finally:
            detector.close()

"""The voice-activity gate in front of the wake model: the same detections, the model asleep in silence."""

import shutil

import numpy as np
import pytest
from wake_corpus import pink_noise, speech  # noqa: F401 (speech: fixture)

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.wake.gate import VoiceGate, load_vad
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
    """Every detection as (model, score, stream position, frame), and the share of steps the model ran."""
    with OpenWakeWordDetector("hey_jarvis", threshold=threshold, refractory_s=refractory_s,
                              vad_gate=gated) as detector:
        assert detector.gated == gated
        hits = []
        for i in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            hit = detector.process(audio[i:i + FRAME_SAMPLES])
            if hit is not None:
                hits.append((hit.model, hit.score, hit.sample_offset, hit.frame_index))
        gate = detector._gate
        share = gate.steps_run / gate.steps_seen if gate is not None else 1.0
    return hits, share


def test_gated_and_ungated_detections_are_identical_on_a_corpus(corpus):
    """At the default threshold the gate changes no detection: same model, score, position and frame."""
    plain, _ = events(corpus, gated=False, threshold=0.5, refractory_s=2.0)
    gated, _ = events(corpus, gated=True, threshold=0.5, refractory_s=2.0)
    assert len(plain) >= 4  # the wake words in the corpus are heard
    assert gated == plain


def test_every_score_the_model_reaches_is_the_same_with_the_gate(corpus):
    """Each 80 ms window scoring over 0.01 scores the same, bit for bit, gated or not (any threshold
    gives the same detections), while the gated model sleeps through the pauses."""
    plain, _ = events(corpus, gated=False, threshold=0.01, refractory_s=0.0)
    gated, share = events(corpus, gated=True, threshold=0.01, refractory_s=0.0)
    assert len(plain) > 20
    assert gated == plain
    assert share < 0.9  # it slept through the pauses (replays included, it ran on under 90 % of the steps)


def test_in_a_quiet_room_the_gated_model_hardly_runs():
    """Room noise at -60 dBFS: once webrtcvad has settled (its first 2 s), the model runs on under 5 %
    of the steps, and nothing fires."""
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
    assert gate.steps_seen - seen >= 120 and share < 0.05


def test_a_replayed_step_counts_only_when_its_whole_context_was_replayed():
    """After a pause longer than the ring, the oldest context - 1 replayed steps are marked as not counting."""

    class Scripted:  # webrtcvad's interface: voice in the steps listed (each step holds its index)
        def __init__(self, voiced):
            self.voiced = voiced

        def is_speech(self, chunk, rate):
            return int(np.frombuffer(chunk, np.int16)[0]) in self.voiced

    step = 1280
    gate = VoiceGate(Scripted({0, 40}), step_samples=step, context_steps=3, ring_steps=8)
    runs = [gate.admit(i, np.full(step, i, np.int16)) for i in range(41)]
    # step 0's voiced chunks stay in the 10-chunk window through step 2; then the context of 3 steps
    assert [len(r) for r in runs[:6]] == [1] * 6 and runs[6] == ()
    replay = runs[40]
    assert [i for i, _, _ in replay] == list(range(32, 41))
    assert [counts for _, _, counts in replay] == [False, False] + [True] * 7
    assert all(int(pcm[0]) == i for i, pcm, _ in replay)  # the ring kept each step's own samples


def test_the_setting_turns_the_gate_on_by_default_and_off_when_asked():
    """[wake] vad_gate is on by default; vad_gate = false runs the model on every step."""
    from agent.wake import open_detector
    for settings, gated in ((WakeSettings(), True), (WakeSettings(vad_gate=False), False)):
        detector = open_detector(settings)
        try:
            assert detector.gated is gated
        finally:
            detector.close()

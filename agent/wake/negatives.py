"""Make the negative windows the voice verifier is trained against (agent/wake/data).

`python -m agent.wake.negatives` (needs espeak-ng) speaks, in ten espeak-ng voices at two speeds,
what a verifier must turn down: other voices saying each bundled wake word, names that sound
like one ("hey travis", "hey mavis", "a lexus"), and everyday speech. Each voice's speech is one
stream with pauses; the file keeps the embeddings of each stream (float16, steps x 96), from which
training takes every window. The voices and sentences differ from those of the benchmark's
negatives (benchmarks/bench_wake.py), so its false-accept figures are measured on unseen speech.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from agent.audio.base import SAMPLE_RATE
from agent.audio.resample import resample

VOICES = ["en+m1", "en+m2", "en+m3", "en+m4", "en+m5", "en+m7", "en-gb-scotland", "en-gb-x-rp",
          "en-us-nyc", "en-029"]
SPEEDS = (135, 180)
WAKE_WORDS = ["hey jarvis", "alexa", "hey mycroft", "hey rhasspy", "okay nabu"]
SOUND_ALIKES = ["hey travis", "hey jervis", "hey charles", "hey mavis", "hey davis", "hey garvin",
                "hey marvin", "hey java", "a jar of this", "harvest", "hey service", "hey jasmine",
                "alexis", "a lexus", "election", "hey mike", "my crafty friend", "hey rhapsody",
                "okay now", "okay, na boo", "hey, jar this", "jarvis"]
SPEECH = ["could you pass me the salt please", "the train leaves at a quarter to nine",
          "I think we should paint the fence green", "where did I put my glasses this time",
          "the children are playing in the garden", "let's order pizza for dinner tonight",
          "my brother lives two streets away", "the meeting was moved to thursday afternoon"]


def _speak(text: str, voice: str, wpm: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(path), text],
                       check=True, capture_output=True)
        with wave.open(str(path)) as w:
            raw = np.frombuffer(w.readframes(w.getnframes()), np.int16)
            rate = w.getframerate()
    return resample(raw, rate, SAMPLE_RATE)


def _phrases(voice_index: int) -> list[str]:
    """What one voice says: every wake word, a share of the sound-alikes, two sentences."""
    alikes = SOUND_ALIKES[voice_index % 2::2]
    talk = [SPEECH[(2 * voice_index + k) % len(SPEECH)] for k in range(2)]
    commands = ["what time is it", "turn off the lights"]
    wake = [f"{w}, {commands[i % 2]}" if i % 2 else w for i, w in enumerate(WAKE_WORDS)]
    return wake + alikes + talk


def make(out: Path) -> None:
    """Speak, analyse and write the embeddings file."""
    from agent.wake.openwakeword import OpenWakeWordDetector
    pause = np.zeros(int(0.5 * SAMPLE_RATE), np.int16)
    streams = []
    with OpenWakeWordDetector("hey_jarvis") as detector:
        for (i, voice), wpm in itertools.product(enumerate(VOICES), SPEEDS):
            parts = [pause]
            for text in _phrases(i):
                parts += [_speak(text, voice, wpm), pause]
            _, embeddings = detector.analyse(np.concatenate(parts))
            streams.append(embeddings.astype(np.float16))
    ends = np.cumsum([len(s) for s in streams])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, embeddings=np.concatenate(streams), ends=ends)
    print(f"{out}: {int(ends[-1])} steps of embeddings from {len(streams)} streams")


if __name__ == "__main__":
    from agent.wake.verifier import NEGATIVES
    make(Path(sys.argv[1]) if len(sys.argv) > 1 else NEGATIVES)

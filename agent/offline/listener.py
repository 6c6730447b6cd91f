"""Hearing one offline command: the grammar recogniser plus pocketsphinx's endpointer.

Audio arrives as the conversation's 24 kHz frames; both parts work at 16 kHz, so each frame is
resampled once. WebRTC's voice detector (inside pocketsphinx) marks each 30 ms: speech has begun
after MIN_SPEECH_MS of it (a lone "stop" is enough), and the command ends at the first quiet of
end_silence_ms after speech, at max_command_s, or when nothing was said in the first seconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from agent.audio.base import SAMPLE_RATE
from agent.audio.resample import StreamResampler
from agent.offline import grammar
from agent.speech import recognizer as speech

log = logging.getLogger(__name__)

NO_SPEECH_S = 4.0  # nothing said this long after the trigger: the turn is over
MIN_SPEECH_MS = 90  # this much voice in a row starts the command (a click or a knock is shorter)
VAD_MODE = 2        # WebRTC's aggressiveness, 0-3: 2 keeps a kitchen's hum out of "speech"

try:
    from pocketsphinx import Vad
except ImportError:
    Vad = None


def available() -> bool:
    """Whether the offline recogniser can run (the `offline` extra is installed)."""
    return speech.Decoder is not None and Vad is not None


@dataclass(frozen=True)
class Heard:
    """What one command turn produced."""

    text: str
    """The recogniser's words ("" when nothing was recognised)."""
    speech_s: float
    """Seconds of speech the endpointer found (0: nobody spoke)."""
    ended: str
    """Why listening stopped: "quiet" after speech, "max" length, "no speech", or "input ended"."""


class CommandListener:
    """begin(), feed(frame) until it returns True, then finish() -> Heard. One turn at a time."""

    def __init__(self, *, max_command_s: float = 8.0, end_silence_ms: int = 600):
        if not available():
            raise RuntimeError("the offline recogniser needs pocketsphinx: pip install 'mira-agent[offline]'")
        decoder = speech.new_decoder()
        for word, phones in grammar.EXTRA_PRONUNCIATIONS.items():
            if decoder.lookup_word(word) is None:
                decoder.add_word(word, phones, False)
        self._recognizer = speech.Recognizer(decoder, grammar.build(), "offline")
        self._vad = Vad(VAD_MODE, speech.ASR_RATE)
        self._vad_bytes = self._vad.frame_bytes
        self._vad_samples = self._vad_bytes // 2
        self._end_quiet = end_silence_ms * speech.ASR_RATE // 1000
        self._start_voice = MIN_SPEECH_MS * speech.ASR_RATE // 1000
        self._max_samples = int(max_command_s * speech.ASR_RATE)
        self._resampler = StreamResampler(SAMPLE_RATE, speech.ASR_RATE)
        self._held = b""
        self._samples = 0      # fed to the recogniser
        self._vad_at = 0       # judged by the voice detector (it works in whole 30 ms frames)
        self._voiced_run = 0   # samples of voice in a row
        self._quiet_run = 0    # samples of quiet in a row
        self._speech_from: int | None = None
        self._speech_to: int | None = None
        self._ended = ""

    def begin(self) -> None:
        """Start a command turn."""
        self._resampler.clear()
        self._held = b""
        self._samples = self._vad_at = 0
        self._voiced_run = self._quiet_run = 0
        self._speech_from = self._speech_to = None
        self._ended = ""
        self._recognizer.begin(speech.ASR_RATE)

    def feed(self, frame: np.ndarray) -> bool:
        """More of the turn (24 kHz int16); True once the command is over (then call finish)."""
        if self._ended:
            return True
        pcm = self._resampler.process(frame)
        self._recognizer.feed(pcm)
        self._samples += len(pcm)
        self._held += pcm.tobytes()
        while len(self._held) >= self._vad_bytes and not self._ended:
            chunk, self._held = self._held[:self._vad_bytes], self._held[self._vad_bytes:]
            self._vad_at += self._vad_samples
            self._mark(self._vad.is_speech(chunk))
        if not self._ended and self._samples >= self._max_samples:
            self._ended = "max"
        elif not self._ended and self._speech_from is None \
                and self._samples >= NO_SPEECH_S * speech.ASR_RATE:
            self._ended = "no speech"
        return bool(self._ended)

    def _mark(self, voiced: bool) -> None:
        if voiced:
            self._voiced_run += self._vad_samples
            self._quiet_run = 0
            if self._speech_from is None and self._voiced_run >= self._start_voice:
                self._speech_from = self._vad_at - self._voiced_run
        else:
            self._voiced_run = 0
            if self._quiet_run == 0:
                self._speech_to = self._vad_at - self._vad_samples
            self._quiet_run += self._vad_samples
            if self._speech_from is not None and self._quiet_run >= self._end_quiet:
                self._ended = "quiet"

    def finish(self, ended: str = "input ended") -> Heard:
        """End the turn: the words heard (the recogniser's final hypothesis)."""
        text = self._recognizer.finish()
        spoken = 0.0
        if self._speech_from is not None:
            end = self._speech_to if self._quiet_run else self._vad_at
            spoken = (end - self._speech_from) / speech.ASR_RATE
        heard = Heard(text, max(0.0, spoken), self._ended or ended)
        self._ended = self._ended or ended
        return heard

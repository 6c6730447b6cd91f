"""Hearing one offline command: pocketsphinx's endpointer, then the grammar recogniser.

Audio arrives as the conversation's 24 kHz frames; both parts work at 16 kHz, so each frame is
resampled once. WebRTC's voice detector (inside pocketsphinx) marks each 30 ms: speech has begun
after MIN_SPEECH_MS of it (a lone "stop" is enough), and the command ends at the first quiet of
end_silence_ms after speech, at max_command_s, or when nothing was said in the first seconds.

Only then is it recognised, as one whole utterance: the speech with PAD_S of quiet around it
(a cepstral mean over the whole of it, and no long quiet, hear better than a running decode;
measured: benchmarks/bench_offline.py). What the grammar heard is kept only if it fits the sound
nearly as well as a free run of phones does (MIN_FIT): a sentence that is no command fits the
grammar far worse, and gets the offline sentence instead of a wrong action.
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
PAD_S = 0.3         # quiet kept before and after the speech for the recogniser
MIN_FIT = -0.2      # ln(grammar path score / phone loop score) below which a command is refused
DECODER = {
    # Wider than the defaults (1e-48, 7e-29, 1e-48): the paths of the <other> words survive to
    # compete with the commands.
    "beam": 1e-60, "wbeam": 1e-48, "pbeam": 1e-60,
    # Digital silence (a file, a muted converter) has no spectrum to normalise: a faint noise
    # from a fixed seed, so the same audio is heard the same way every run.
    "dither": True, "seed": 1,
}

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
    fit: float = 0.0
    """How much worse the words fit the sound than any run of phones (ln of the score ratio)."""

    @property
    def sure(self) -> bool:
        """The words fit the sound well enough to act on."""
        return bool(self.text) and self.fit >= MIN_FIT


class CommandListener:
    """begin(), feed(frame) until it returns True, then finish() -> Heard. One turn at a time."""

    def __init__(self, *, max_command_s: float = 8.0, end_silence_ms: int = 600):
        if not available():
            raise RuntimeError("the offline recogniser needs pocketsphinx: pip install 'mira-agent[offline]'")
        decoder = self._decoder = speech.new_decoder(**DECODER)
        for word, phones in grammar.EXTRA_PRONUNCIATIONS.items():
            if decoder.lookup_word(word) is None:
                decoder.add_word(word, phones, False)
        decoder.add_jsgf_string("offline", grammar.build())
        self._phones = speech.phone_loop(decoder)
        self._vad = Vad(VAD_MODE, speech.ASR_RATE)
        self._vad_bytes = self._vad.frame_bytes
        self._vad_samples = self._vad_bytes // 2
        self._end_quiet = end_silence_ms * speech.ASR_RATE // 1000
        self._start_voice = MIN_SPEECH_MS * speech.ASR_RATE // 1000
        self._max_samples = int(max_command_s * speech.ASR_RATE)
        self._resampler = StreamResampler(SAMPLE_RATE, speech.ASR_RATE)
        self._audio: list[np.ndarray] = []  # the turn so far, at 16 kHz
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
        self._audio.clear()
        self._held = b""
        self._samples = self._vad_at = 0
        self._voiced_run = self._quiet_run = 0
        self._speech_from = self._speech_to = None
        self._ended = ""

    def feed(self, frame: np.ndarray) -> bool:
        """More of the turn (24 kHz int16); True once the command is over (then call finish)."""
        if self._ended:
            return True
        pcm = self._resampler.process(frame)
        self._audio.append(pcm)
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
        """End the turn: recognise the speech (tens to hundreds of ms: call it off the loop)."""
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        self._audio.clear()
        spoken, segment = 0.0, audio
        if self._speech_from is not None:
            end = self._speech_to if self._quiet_run else self._vad_at
            spoken = max(0, end - self._speech_from) / speech.ASR_RATE
            pad = int(PAD_S * speech.ASR_RATE)
            segment = audio[max(0, self._speech_from - pad):end + pad]
        text, score = speech.decode_whole(self._decoder, "offline", segment)
        fit = 0.0
        if text:  # only words need the comparison (it costs a second, cheaper decode)
            _, phones = speech.decode_whole(self._decoder, self._phones, segment)
            fit = score - phones
        heard = Heard(text, spoken, self._ended or ended, fit)
        self._ended = self._ended or ended
        return heard

"""A pocketsphinx decoder on a JSGF grammar: exact results and streaming partials on few phrases.

Open vocabulary is poor on small devices and synthetic voices; a grammar of the phrases that
matter gives exact words. Without pocketsphinx (an optional extra) nothing is recognised.
"""

from __future__ import annotations

import logging
import math
import os
import re

import numpy as np

from agent.audio.resample import StreamResampler

log = logging.getLogger(__name__)

ASR_RATE = 16000

_WORD = re.compile(r"[a-z0-9']+")

try:
    from pocketsphinx import Decoder
except ImportError:  # callers degrade: the devserver hears "", the offline mode stays off
    Decoder = None


def words(text: str) -> tuple[str, ...]:
    """Lower-case words of a text, punctuation dropped: the form phrases are compared in."""
    return tuple(_WORD.findall(text.lower()))


def new_decoder(**options):
    """A decoder with the bundled en-us model and no grammar yet (options: pocketsphinx settings
    such as beam); None without pocketsphinx."""
    if Decoder is None:
        return None
    # bestpath off: the lattice rescoring drops the last words of a phrase (seen: "what time").
    return Decoder(samprate=ASR_RATE, lm=None, bestpath=False, loglevel="FATAL", **options)


def phone_loop(decoder, name: str = "phones") -> str:
    """Add a search that hears any run of phones (the model's phone bigram) to the decoder; its
    name. What a grammar heard can be compared with it: speech the grammar does not fit scores
    far worse on the grammar than on the free phones."""
    from pocketsphinx import get_model_path

    decoder.add_allphone_file(name, os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin"))
    return name


def decode_whole(decoder, search: str, pcm16k: np.ndarray) -> tuple[str, float]:
    """One whole utterance on one search (the cepstral mean taken over all of it, which hears
    better than a running one); its text and the natural log of its path score."""
    decoder.activate_search(search)
    decoder.start_utt()
    decoder.process_raw(np.ascontiguousarray(pcm16k, dtype=np.int16).tobytes(), False, True)
    decoder.end_utt()
    h = decoder.hyp()
    if h is None or h.score <= 0:
        return "", float("-inf")
    return h.hypstr, math.log(h.score)


def knows(decoder, phrase: str) -> bool:
    """Whether every word of the phrase is in the decoder's pronouncing dictionary."""
    return all(decoder.lookup_word(w) is not None for w in words(phrase))


class Recognizer:
    """One decoder on one grammar, reused turn after turn: begin(rate), feed(pcm) -> partial,
    finish() -> text. With no decoder (or no grammar) every turn is heard as ""."""

    def __init__(self, decoder, jsgf: str, name: str = "grammar"):
        self.jsgf = jsgf if decoder is not None else ""
        self._decoder = None
        if decoder is not None and jsgf:
            decoder.add_jsgf_string(name, jsgf)
            decoder.activate_search(name)
            self._decoder = decoder
        self._resampler: StreamResampler | None = None
        self._active = False

    @property
    def available(self) -> bool:
        """False without pocketsphinx or a grammar: every turn is heard as ""."""
        return self._decoder is not None

    def begin(self, rate: int) -> None:
        """Start a turn whose audio is int16 at `rate`."""
        if self._active:
            self.finish()
        # agent.audio's resampler: float, no dither, so the same audio is heard the same way each run
        self._resampler = None if rate == ASR_RATE else StreamResampler(rate, ASR_RATE)
        if self._decoder is not None:
            self._decoder.start_utt()
        self._active = True

    def feed(self, pcm: np.ndarray) -> str:
        """Recognise more audio of the turn; the hypothesis so far ("" when none)."""
        if not self._active or self._decoder is None or not len(pcm):
            return ""
        self._process(pcm if self._resampler is None else self._resampler.process(pcm))
        return self._hyp()

    def finish(self) -> str:
        """End the turn; the final transcript ("" when nothing was recognised)."""
        if not self._active:
            return ""
        self._active = False
        if self._decoder is None:
            return ""
        if self._resampler is not None:
            self._process(self._resampler.process(np.zeros(0, dtype=np.int16), last=True))
        self._decoder.end_utt()
        return self._hyp()

    def _process(self, pcm16k: np.ndarray) -> None:
        if len(pcm16k):
            self._decoder.process_raw(np.ascontiguousarray(pcm16k, dtype=np.int16).tobytes(),
                                      False, False)

    def _hyp(self) -> str:
        h = self._decoder.hyp()
        return h.hypstr if h is not None else ""

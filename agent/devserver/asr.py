"""Offline speech recognition of user turns: pocketsphinx with a grammar of the script's phrases.

A grammar of the few known phrases gives exact results on espeak-ng speech and real streaming
partials (the hypothesis after each chunk). Without pocketsphinx, turns are transcribed as "".
"""

from __future__ import annotations

import logging

import numpy as np

from agent.audio.resample import StreamResampler
from agent.devserver.script import words

log = logging.getLogger(__name__)

ASR_RATE = 16000

try:
    from pocketsphinx import Decoder
except ImportError:  # the devserver still works: every turn gets the fallback reply
    Decoder = None


def _in_dictionary(decoder, phrase: str) -> bool:
    return all(decoder.lookup_word(w) is not None for w in words(phrase))


def grammar(phrases: list[str], prefixes: tuple[str, ...] = ()) -> str:
    """A JSGF grammar: an optional prefix (a wake word), then one of the phrases."""
    body = " | ".join(" ".join(words(p)) for p in phrases if words(p)) or "hello"
    rule = "public <utt> = <phrase>;"
    extra = ""
    if prefixes:
        rule = "public <utt> = [<prefix>] <phrase>;"
        extra = "<prefix> = " + " | ".join(prefixes) + ";\n"
    return f"#JSGF V1.0;\ngrammar mira;\n{rule}\n{extra}<phrase> = {body};\n"


class Recognizer:
    """One decoder, reused turn after turn: begin(rate), feed(pcm) -> partial, finish() -> text."""

    def __init__(self, phrases: list[str], prefixes: tuple[str, ...] = ()):
        self.jsgf = ""
        self._decoder = None
        if Decoder is not None:
            # bestpath off: the lattice rescoring drops the last words of a phrase (seen: "what time").
            d = Decoder(samprate=ASR_RATE, lm=None, bestpath=False, loglevel="FATAL")
            known = [p for p in phrases if _in_dictionary(d, p)]
            if len(known) < len(phrases):
                log.warning("devserver: %d script phrase(s) have words pocketsphinx does not know "
                            "and can only be typed, not spoken", len(phrases) - len(known))
            if known:
                self.jsgf = grammar(known, tuple(p for p in prefixes if _in_dictionary(d, p)))
                d.add_jsgf_string("mira", self.jsgf)
                d.activate_search("mira")
                self._decoder = d
        self._resampler = None
        self._active = False
        self._rate = ASR_RATE

    @property
    def available(self) -> bool:
        """False without pocketsphinx (or without a phrase it can say): every turn is heard as ""."""
        return self._decoder is not None

    def begin(self, rate: int) -> None:
        """Start a turn whose audio is int16 at `rate`."""
        if self._active:
            self.finish()
        self._rate = rate
        # agent.audio's resampler: float, no dither, so the same audio is heard the same way each run
        self._resampler = None if rate == ASR_RATE else StreamResampler(rate, ASR_RATE)
        if self._decoder is not None:
            self._decoder.start_utt()
        self._active = True

    def feed(self, pcm: np.ndarray) -> str:
        """Recognise more audio of the turn; the hypothesis so far ("" when none)."""
        if not self._active or self._decoder is None or not len(pcm):
            return ""
        data = pcm if self._resampler is None else self._resampler.process(pcm)
        if len(data):
            self._decoder.process_raw(np.ascontiguousarray(data, dtype=np.int16).tobytes(), False, False)
        return self._hyp()

    def finish(self) -> str:
        """End the turn; the final transcript ("" when nothing was recognised)."""
        if not self._active:
            return ""
        self._active = False
        if self._decoder is None:
            return ""
        if self._resampler is not None:
            tail = self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                self._decoder.process_raw(tail.astype(np.int16).tobytes(), False, False)
        self._decoder.end_utt()
        return self._hyp()

    def _hyp(self) -> str:
        h = self._decoder.hyp()
        return h.hypstr if h is not None else ""

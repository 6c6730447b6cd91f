"""Offline speech recognition of user turns: pocketsphinx with a grammar of the script's phrases.

A grammar of the few known phrases gives exact results on espeak-ng speech and real streaming
partials (the hypothesis after each chunk). Without pocketsphinx, turns are transcribed as "".
"""

from __future__ import annotations

import logging

from agent.devserver.script import words
from agent.speech import recognizer as speech
from agent.speech.recognizer import ASR_RATE

log = logging.getLogger(__name__)

__all__ = ["ASR_RATE", "Recognizer", "grammar"]


def grammar(phrases: list[str], prefixes: tuple[str, ...] = ()) -> str:
    """A JSGF grammar: an optional prefix (a wake word), then one of the phrases."""
    body = " | ".join(" ".join(words(p)) for p in phrases if words(p)) or "hello"
    rule = "public <utt> = <phrase>;"
    extra = ""
    if prefixes:
        rule = "public <utt> = [<prefix>] <phrase>;"
        extra = "<prefix> = " + " | ".join(prefixes) + ";\n"
    return f"#JSGF V1.0;\ngrammar mira;\n{rule}\n{extra}<phrase> = {body};\n"


class Recognizer(speech.Recognizer):
    """The script's phrases (after an optional wake word) as one grammar, on one reused decoder."""

    def __init__(self, phrases: list[str], prefixes: tuple[str, ...] = ()):
        decoder, jsgf = speech.new_decoder(), ""
        if decoder is not None:
            known = [p for p in phrases if speech.knows(decoder, p)]
            if len(known) < len(phrases):
                log.warning("devserver: %d script phrase(s) have words pocketsphinx does not know "
                            "and can only be typed, not spoken", len(phrases) - len(known))
            if known:
                jsgf = grammar(known, tuple(p for p in prefixes if speech.knows(decoder, p)))
        super().__init__(decoder if jsgf else None, jsgf, "mira")

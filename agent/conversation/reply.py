"""What is said in a session: the reply's audio to the speaker, and both sides' words to the log
and the history. Bookkeeping only: the conversation decides what each event does to the state."""

from __future__ import annotations

import logging

from agent.audio.base import Speaker
from agent.audio.codec import StreamDecoder
from agent.session import History, SessionLedger

log = logging.getLogger("agent.conversation")
SPEECH = {"SPEECH": True}  # marks log records that carry what people said (see [logging])


class ReplyAudio:
    """The reply's audio: decoded from the session's format, played at once, and counted per item
    so that a barge-in can tell the server exactly how much of it was heard."""

    def __init__(self, speaker: Speaker, fmt: str):
        self.speaker = speaker
        self._decoder = StreamDecoder(fmt)

    def restart(self, fmt: str) -> None:
        """A new session: nothing of an earlier stream may come out."""
        self._decoder = StreamDecoder(fmt)

    def play(self, ledger: SessionLedger, e) -> None:
        """One response.audio.delta, to the speaker now."""
        pcm = self._decoder.decode(e.audio)
        ledger.audio_received(e.item_id, len(pcm))
        self.speaker.play(pcm, e.item_id)

    def finish(self, ledger: SessionLedger, e) -> None:
        """response.audio.done: the resampler of G.711 audio gives the last few ms it held back."""
        tail = self._decoder.flush()
        if len(tail):
            item = str(e.get("item_id") or "")
            ledger.audio_received(item, len(tail))
            self.speaker.play(tail, item)

    def cut(self, ledger: SessionLedger) -> tuple[str | None, int]:
        """Silence now; the item cut and the ms of it the user heard (never past what arrived)."""
        played = self.speaker.flush()
        item = ledger.speaking_item
        heard_ms = ledger.truncate_ms(item, played.get(item, 0)) if item is not None else 0
        ledger.speaking_item = None
        self._decoder.reset()
        return item, heard_ms


class Words:
    """Both sides' words as they arrive: partial lines logged, finished ones kept in the history
    (replayed into a new session after a drop). Function call names are kept by call id."""

    def __init__(self):
        self._partial: dict[tuple[str, str], str] = {}
        self._call_names: dict[str, str] = {}

    def add(self, who: str, e, history: History, *, done: bool) -> None:
        """A transcript delta or a whole one, of the user or the assistant."""
        key = (who, e.item_id)
        if done:
            self._partial.pop(key, None)
            log.info(f"{who}: %s", e.text, extra=SPEECH)  # only the words are arguments (hidden)
            history.add(who, e.text)
            return
        text = self._partial[key] = self._partial.get(key, "") + e.text
        log.log(logging.INFO if who == "user" else logging.DEBUG, f"{who} (partial): %s", text,
                extra=SPEECH)

    def call_added(self, item: dict) -> None:
        if item.get("type") == "function_call":
            self._call_names[str(item.get("call_id"))] = str(item.get("name") or "")

    def call_name(self, call_id: str) -> str:
        return self._call_names.get(call_id, "")

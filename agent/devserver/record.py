"""What the devserver saw and said, per session, for tests to assert on (sample-exact)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Turn:
    """One committed user turn: its audio exactly as received, and what was recognised."""

    item_id: str
    audio: bytes
    """The committed audio, in the input format's bytes (pcm16 24 kHz, or G.711 8 kHz)."""
    audio_format: str
    audio_start_ms: int
    audio_end_ms: int
    transcript: str = ""


@dataclass
class Reply:
    """One assistant audio item: the text spoken, the audio sent, and any truncation."""

    response_id: str
    item_id: str
    text: str
    audio: bytearray = field(default_factory=bytearray)
    """Audio bytes sent in response.audio.delta, in the output format."""
    audio_format: str = "pcm16"
    status: str = "in_progress"
    truncated_ms: int | None = None


@dataclass
class Handshake:
    """One upgrade attempt: when, which path, and the HTTP status the server answered."""

    at: float
    path: str
    status: int


@dataclass
class SessionRecord:
    """Everything one connection carried, kept in order."""

    session_id: str
    path: str
    opened_at: float = field(default_factory=time.monotonic)
    client_frames: list[str | bytes] = field(default_factory=list)
    """Every frame received, as received (text or binary)."""
    client_events: list[Any] = field(default_factory=list)
    """Every frame that parsed as JSON, valid or not."""
    append_sizes: Counter = field(default_factory=Counter)
    """How many input_audio_buffer.append carried each size of audio, in bytes."""
    bad_appends: list[int] = field(default_factory=list)
    """Sizes of appends that were not exactly one frame (the server's frame_ms) in the input format."""
    server_events: list[dict[str, Any]] = field(default_factory=list)
    """Every event sent, in order."""
    input_audio: bytearray = field(default_factory=bytearray)
    """Every decoded byte of every input_audio_buffer.append, concatenated, in the input format."""
    input_format: str = "pcm16"
    turns: list[Turn] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    function_outputs: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None
    closed: bool = False

    @property
    def transcripts(self) -> list[str]:
        """The completed user transcripts, in order."""
        return [t.transcript for t in self.turns]

    @property
    def reply_texts(self) -> list[str]:
        return [r.text for r in self.replies]

    def input_pcm(self) -> np.ndarray:
        """input_audio as int16 samples (pcm16 only)."""
        return np.frombuffer(bytes(self.input_audio[: len(self.input_audio) // 2 * 2]), dtype="<i2")

    def events(self, kind: str) -> list[dict[str, Any]]:
        """Server events of one type, in order."""
        return [e for e in self.server_events if e.get("type") == kind]


class Recorder:
    """The sessions of a server, readable from another thread; wait_for() blocks on a predicate."""

    def __init__(self):
        self.sessions: list[SessionRecord] = []
        self.handshakes: list[Handshake] = []
        self._changed = threading.Condition()

    def changed(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0):
        """Block until predicate() is truthy (re-checked on every recorded change); its value.

        Raises TimeoutError after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"devserver: condition not met within {timeout} s")
                self._changed.wait(min(left, 0.1))

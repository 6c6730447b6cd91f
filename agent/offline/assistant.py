"""The speaker's offline turn: hear one command, act with the built-in tools, answer in speech.

The conversation hands it the turn's audio (the same no-word-lost frames the link would have
sent) until feed() says the command is over, then asks answer(). The recogniser loads on a
worker thread (prepare(), e.g. when the link goes down); frames that arrive before it is ready
wait in a list, so nothing blocks the conversation thread and no word is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.offline import answers
from agent.offline.intents import Command, understand
from agent.offline.listener import CommandListener, Heard, available
from agent.offline.settings import OfflineSettings
from agent.offline.voice import Voice

log = logging.getLogger(__name__)

LOAD_WAIT_S = 10.0  # the recogniser loads in about half a second; a loaded machine may take longer


def understood(heard: Heard | None) -> Command | None:
    """The command heard, if the words fit the sound well enough to act on."""
    return understand(heard.text) if heard is not None and heard.sure else None


@dataclass(frozen=True)
class Answer:
    """What an offline turn came to."""

    text: str
    """The sentence spoken."""
    audio: np.ndarray
    """That sentence as 24 kHz int16 speech."""
    command: Command | None
    """What was understood (None: anything else, or nothing)."""
    heard: Heard | None
    """What the recogniser heard (None when it is not installed or turned off)."""


class OfflineAssistant:
    """One offline turn at a time: begin(), feed(frame) until True, answer()."""

    def __init__(self, settings: OfflineSettings, toolbox, timers, base_dir: Path | None = None):
        self.settings = settings
        self.toolbox = toolbox
        self.timers = timers
        self.voice = Voice(settings.voice, settings.speed_wpm, base_dir)
        self.recognises = settings.enabled and available()
        if settings.enabled and not self.recognises:
            log.warning("offline commands are off: pocketsphinx is not installed "
                        "(pip install 'mira-agent[offline]'); offline, the speaker only says so")
        self._listener: CommandListener | None = None
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiting: list[np.ndarray] = []
        self._active = self._done = self._listening = False

    def prepare(self) -> None:
        """Load the recogniser on a worker thread (about half a second); safe to call again."""
        with self._lock:
            if not self.recognises or self._listener is not None or self._loading is not None:
                return
            self._loading = threading.Thread(target=self._load, name="offline-load", daemon=True)
            self._loading.start()

    def wait_ready(self, timeout: float = LOAD_WAIT_S) -> bool:
        """Wait for prepare()'s loading; whether the recogniser is ready."""
        loading = self._loading
        if loading is not None:
            loading.join(timeout)
        return self._listener is not None

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            listener = CommandListener(max_command_s=self.settings.max_command_s,
                                       end_silence_ms=self.settings.end_silence_ms)
        except Exception as e:  # a broken model install: say offline, as without the extra
            log.error("offline recogniser failed to load (%s); offline, the speaker only says so", e)
            self.recognises = False
            return
        self.voice.say(answers.OFFLINE_SENTENCE)  # the one sentence every offline turn may need
        with self._lock:
            self._listener = listener
        log.info("offline recogniser ready in %.2f s", time.perf_counter() - t0)

    def begin(self) -> None:
        """Start a command turn."""
        self.prepare()
        self._waiting.clear()
        self._active, self._done, self._listening = True, not self.recognises, False

    def feed(self, frame: np.ndarray) -> bool:
        """More of the turn's audio; True once the command is over (at once without a recogniser:
        there is nothing to hear)."""
        if self._done or not self._active:
            return True
        self._waiting.append(frame)
        listener = self._started_listener()
        if listener is not None:
            self._done = self._catch_up(listener)
        return self._done

    def _started_listener(self) -> CommandListener | None:
        with self._lock:
            listener = self._listener
        if listener is not None and not self._listening:
            listener.begin()
            self._listening = True
        return listener

    def _catch_up(self, listener: CommandListener) -> bool:
        frames, self._waiting = self._waiting, []
        return any(listener.feed(f) for f in frames)  # stops at the end of the command

    def answer(self) -> Answer:
        """End the turn: act on the command and say the answer (the offline sentence for anything
        else). Runs a tool and espeak-ng (tens of ms): call it off the conversation thread."""
        heard = None
        if self.recognises and self._active:
            self.wait_ready()
            listener = self._started_listener()
            if listener is not None:
                if not self._done:
                    self._catch_up(listener)
                heard = listener.finish()
        self._waiting.clear()
        self._active = False
        command = understood(heard)
        if heard is not None:
            log.info("offline: heard %r (%s, fit %.2f%s)", heard.text, heard.ended, heard.fit,
                     "" if heard.sure or not heard.text else ": not sure enough to act on")
        text = answers.act(command, self.toolbox, self.timers) if command else answers.OFFLINE_SENTENCE
        return Answer(text, self.voice.say(text), command, heard)

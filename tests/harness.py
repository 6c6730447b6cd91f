"""A conversation on the file backend against the local Mira server, for end-to-end tests."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent import config as config_mod
from agent.audio.base import FRAME_SAMPLES
from agent.daemon import Parts, build_conversation
from agent.demo import demo_config, write_wav
from agent.devserver import DevServer
from agent.offline.listener import available as offline_available
from agent.state import State
from conformance import check_client_event, check_server_event


needs_offline_extra = pytest.mark.skipif(
    not offline_available(),
    reason="offline answers need pocketsphinx: pip install 'mira-agent[offline]' (make setup installs it)")
"""Tests of offline answers: skipped, saying what to install, where pocketsphinx is missing."""

KEY = "sk-mira-test"


def frames_in_order(sent: np.ndarray, source: np.ndarray, start: int = 0) -> list[int]:
    """Indices (from frame `start` on) of source frames that make up `sent`: exact copies, in order.

    Digital silence makes frames alike, so each frame matches the earliest candidate after the last.
    """
    src = source[: len(source) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    assert len(sent) % FRAME_SAMPLES == 0, "the server got a partial frame"
    indices, j = [], start
    for frame in sent.reshape(-1, FRAME_SAMPLES):
        while j < len(src) and not np.array_equal(src[j], frame):
            j += 1
        assert j < len(src), "the server got audio that is not the microphone's, or out of order"
        indices.append(j)
        j += 1
    return indices


def check_all_events(session) -> None:
    """Every event both ways is valid, and every append was exactly one frame."""
    assert not session.bad_appends, f"appends that are not one frame: {session.append_sizes}"
    for e in session.client_events:
        check_client_event(e)
    for e in session.server_events:
        check_server_event(e)


class Run:
    """A conversation on the file backend against a DevServer, in a thread, recording states."""

    def __init__(self, tmp: Path, server: DevServer, pcm: np.ndarray, *, trigger_on_start: bool = True,
                 **overrides):
        write_wav(tmp / "you.wav", pcm)
        base = demo_config(server.url, tmp).settings.model_dump()
        base["sounds"]["enabled"] = False  # the sink then holds exactly the reply audio
        for section, values in overrides.items():
            if isinstance(values, dict):
                base[section].update(values)
            else:
                base[section] = values
        self.config = config_mod.parse(base, tmp / "agent.toml")
        self.parts = Parts()
        self.states: list[State] = []
        self.conversation = build_conversation(self.config, self.parts, api_key=KEY,
                                               trigger_on_start=trigger_on_start,
                                               on_state=lambda s, r: self.states.append(s))
        self.code = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.code = self.conversation.run()
        finally:
            self.parts.close()

    def __enter__(self):
        self.thread.start()
        return self

    def wait_state(self, state: State, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while state not in self.states:
            assert time.monotonic() < deadline, f"never reached {state}; states: {self.states}"
            time.sleep(0.005)

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"conversation did not finish; states: {self.states}"

    def __exit__(self, *exc):
        self.conversation.stop()
        self.thread.join(10)


def file_config(folder: Path, url: str, extra: str = "", wake: str = '[wake]\nengine = "none"\n') -> Path:
    """folder/agent.toml: the file backend (in.wav -> out.wav) against `url`, plus `extra` TOML."""
    path = folder / "agent.toml"
    path.write_text(f'[server]\nurl = "{url}"\n[audio]\nbackend = "file"\ninput_file = "in.wav"\n'
                    f'output_file = "out.wav"\n{wake}{extra}')
    return path

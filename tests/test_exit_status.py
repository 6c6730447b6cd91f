"""`run --exit-when-done` tells a script how the conversation went, and always ends: the real
`mira-agent` process on the file backend, against the project's server or nothing at all."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from agent.offline.answers import OFFLINE_SENTENCE
from harness import KEY, file_config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _run(folder: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "agent.cli", "run", "--config", str(folder / "agent.toml"),
            "--exit-when-done", "--trigger-on-start"]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "MIRA_API_KEY": KEY})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_conversation_that_went_well_exits_0(tmp_path):
    """The turn was heard and answered: status 0."""
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Hello.")], trailing_s=3.0))
    with DevServer(api_key=KEY) as server:
        file_config(tmp_path, server.url, '[session]\nfollow_up_s = 0.5\n')
        r = _run(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "session closed" in r.stderr and "connected " in r.stderr


def test_a_refused_key_exits_78(tmp_path):
    """The server refuses the key: status 78 (only a person can fix it), the sentence names the key."""
    write_wav(tmp_path / "in.wav", np.zeros(SAMPLE_RATE, np.int16))
    with DevServer(api_key="sk-some-other-key") as server:
        file_config(tmp_path, server.url)
        r = _run(tmp_path)
    assert r.returncode == 78, r.stderr
    assert "refused the API key" in r.stderr and KEY not in r.stderr + r.stdout


def test_a_server_that_cannot_be_reached_ends_the_run_with_the_offline_sentence_and_1(tmp_path):
    """Nothing listens: the turn is answered on the device at once (no retrying for
    reconnect.buffer_s); silence asks for nothing it can do there, so it says it is offline, and
    the run exits 1 (it does not retry for ever)."""
    write_wav(tmp_path / "in.wav", np.zeros(SAMPLE_RATE, np.int16))
    file_config(tmp_path, f"ws://127.0.0.1:{_closed_port()}/v1/realtime", '[reconnect]\nbuffer_s = 20.0\n')
    r = _run(tmp_path, timeout=30)
    assert r.returncode == 1, r.stderr
    assert "refused the connection" in r.stderr and "turn dropped" not in r.stderr
    assert "never connected" in r.stderr  # the summary counts no open time for it
    assert f"assistant (offline): {OFFLINE_SENTENCE}" in r.stderr

"""SIGTERM while the speaker is speaking: a real `mira-agent run` process closes cleanly and fast."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.audio.base import SAMPLE_RATE
from agent.audio.wavfile import read_wav
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from harness import file_config

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-mira-sigterm-test"


def test_sigterm_while_speaking_closes_with_1000_and_exits_0_within_2s(tmp_path):
    """A long reply is playing; SIGTERM: the server records close 1000, playback stops, exit 0 in <= 2 s."""
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Tell me a story.")], trailing_s=20.0))
    with DevServer(api_key=KEY) as server:
        file_config(tmp_path, server.url)
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                                 str(tmp_path / "agent.toml"), "--trigger-on-start"],
                                cwd=ROOT, env={**os.environ, "MIRA_API_KEY": KEY},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.recorder.wait_for(lambda: server.sessions and server.sessions[-1].replies
                                     and server.sessions[-1].replies[0].status == "completed", timeout=30)
            deadline = time.monotonic() + 10
            while (tmp_path / "out.wav").stat().st_size < 44 + SAMPLE_RATE and time.monotonic() < deadline:
                time.sleep(0.02)  # a second of the reply has been played: it is speaking
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = proc.wait(timeout=10)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=5)
        session = server.recorder.wait_for(lambda: server.sessions[-1].closed and server.sessions[-1], timeout=5)
    assert code == 0, err
    assert took <= 2.0, took
    assert session.close_code == 1000
    assert "state thinking -> speaking" in err and "received SIGTERM" in err
    assert "follow_up" not in err  # it was still speaking when told to stop
    played = len(read_wav(tmp_path / "out.wav"))
    assert SAMPLE_RATE <= played < len(session.replies[0].audio) // 2  # the reply was cut, not finished
    assert "Traceback" not in err and KEY not in err

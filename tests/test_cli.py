"""The mira-agent command as a user runs it: a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.audio.wavfile import read_wav
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from harness import file_config

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-mira-cli-test"


def _run(args, env=None, timeout=60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)


@pytest.mark.slow
def test_run_on_the_file_backend_exits_when_done(tmp_path):
    """`run --config F --exit-when-done --trigger-on-start` holds a conversation with no hardware."""
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Hello.")], trailing_s=3.0))
    with DevServer(api_key=KEY) as server:
        file_config(tmp_path, server.url)
        r = _run(["run", "--config", str(tmp_path / "agent.toml"), "--exit-when-done", "--trigger-on-start"],
                 env={"MIRA_API_KEY": KEY})
        assert r.returncode == 0, r.stderr
        assert server.last_session.transcripts == ["hello"]
    assert len(read_wav(tmp_path / "out.wav")) > 12000
    assert "user: hello" in r.stderr and "assistant: Hello!" in r.stderr
    assert KEY not in r.stderr + r.stdout


def test_missing_api_key_is_a_config_error(tmp_path):
    """No key anywhere: exit 78 and a sentence naming the three places a key can be."""
    (tmp_path / "agent.toml").write_text('[audio]\nbackend = "file"\ninput_file = "x.wav"\noutput_file = "y.wav"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("MIRA_API_KEY", "CREDENTIALS_DIRECTORY")}
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(tmp_path / "agent.toml")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 78
    assert "mira-api-key" in r.stderr and "MIRA_API_KEY" in r.stderr and "Traceback" not in r.stderr


def test_missing_config_file_exits_78(tmp_path):
    r = _run(["run", "--config", str(tmp_path / "nope.toml")])
    assert r.returncode == 78 and "does not exist" in r.stderr and "Traceback" not in r.stderr

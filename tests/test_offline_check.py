"""`mira-agent check` and the offline answers: the row that says whether they work, and a server
row that reads "offline" when the service cannot be reached (and not for a refused key)."""

import socket
import subprocess
import sys
from pathlib import Path

from agent import config
from agent.devserver import DevServer
from agent.service import check

from harness import needs_offline_extra

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-mira-offline-check"


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return config.load(path)


@needs_offline_extra
def test_offline_answers_row_says_they_work_with_which_voice(tmp_path):
    row = check.check_offline(load(tmp_path, '[offline]\nvoice = "en-gb"\n'))
    assert row.ok is True and "answered on the device (voice en-gb)" in row.detail


def test_offline_answers_turned_off_is_not_a_failure(tmp_path):
    """enabled = false: the row says what the speaker does instead, and nothing fails."""
    row = check.check_offline(load(tmp_path, "[offline]\nenabled = false\n"))
    assert row.ok is None and "only says so" in row.detail


def test_a_piper_voice_that_is_not_there_fails_naming_the_setting(tmp_path):
    row = check.check_offline(load(tmp_path, '[offline]\nvoice = "voices/joe.onnx"\n'))
    assert row.ok is False and row.detail.startswith("offline.voice: the Piper voice ")
    assert str(tmp_path / "voices" / "joe.onnx") in row.detail and "espeak-ng voice" in row.fix


def test_a_refused_key_is_not_called_offline(tmp_path):
    with DevServer(api_key="sk-another-key") as server:
        row = check.check_session(load(tmp_path, f'[server]\nurl = "{server.url}"\n'), KEY)
    assert row.ok is False and "refused the API key" in row.detail and "offline" not in row.detail


def test_check_reads_offline_when_nothing_listens(tmp_path):
    """The real `mira-agent check` against a closed port: the server row starts with 'offline:'
    and its fix says what the speaker still does; the offline answers row is there too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "key").chmod(0o600)
    (tmp_path / "agent.toml").write_text(
        f'[server]\nurl = "ws://127.0.0.1:{port}/v1/realtime"\napi_key_file = "key"\n'
        '[audio]\nbackend = "file"\ninput_file = "in.wav"\noutput_file = "out.wav"\n[wake]\nengine = "none"\n')
    from agent.demo import write_wav
    import numpy as np
    write_wav(tmp_path / "in.wav", np.zeros(2400, np.int16))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(tmp_path / "agent.toml")],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    server = next(i for i, line in enumerate(lines) if " server " in line)
    assert "FAIL" in lines[server] and "offline: 127.0.0.1 refused the connection" in lines[server]
    assert "answers timers, the time and volume itself" in lines[server + 1]
    assert any(line.split()[1:2] == ["offline"] for line in lines)

"""The mira-agent command as a user runs it: a real subprocess."""

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
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


def test_global_options_work_before_and_after_the_command(tmp_path):
    """--log-level before or after the command name: both accepted, and debug really logs at debug."""
    before = _run(["--log-level", "debug", "check", "--config", str(tmp_path / "nope.toml"), "--offline"])
    after = _run(["check", "--config", str(tmp_path / "nope.toml"), "--offline", "--log-level", "debug"])
    assert before.returncode == after.returncode == 78, before.stderr + after.stderr
    assert "unrecognized" not in before.stderr + after.stderr


def test_run_takes_log_level_as_the_error_messages_say(tmp_path):
    """`run --log-level warning` is accepted (errors tell users to pass --log-level to run) and
    applied: the INFO lines a default run prints are gone."""
    write_wav(tmp_path / "in.wav", np.zeros(SAMPLE_RATE // 2, np.int16))
    file_config(tmp_path, "ws://127.0.0.1:9/v1/realtime")
    args = ["run", "--config", str(tmp_path / "agent.toml"), "--exit-when-done"]
    default = _run(args, env={"MIRA_API_KEY": KEY})
    quiet = _run(args + ["--log-level", "warning"], env={"MIRA_API_KEY": KEY})
    assert " INFO " in default.stderr and quiet.returncode == default.returncode
    assert " INFO " not in quiet.stderr and "unrecognized" not in quiet.stderr, quiet.stderr


def test_devserver_help_lists_its_options():
    """`mira-agent devserver --help` shows --host, --port and the rest."""
    r = _run(["devserver", "--help"])
    assert r.returncode == 0
    for option in ("--host", "--port", "--api-key-file", "--script", "--speed", "--allow-remote"):
        assert option in r.stdout


def test_devserver_runs_with_the_readmes_options(tmp_path):
    """The README's `mira-agent devserver --host 127.0.0.1 --port P` listens there until SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "devserver", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # printed once listening
        assert f"ws://127.0.0.1:{port}/v1/realtime" in line, line + proc.stderr.read()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    assert code == 0


@pytest.mark.parametrize("command", [["demo", "--dir", "{tmp}"], ["devserver", "--port", "0"]])
def test_demo_and_devserver_without_their_extra_say_what_to_install(tmp_path, command):
    """On a speaker installed with only the device extra (no websockets), one sentence names the pip
    command; no traceback, no 'please report it'."""
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["websockets"] = None\n')
    r = _run([c.replace("{tmp}", str(tmp_path / "demo")) for c in command],
             env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 1, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"mira-agent: {command[0]} needs the devserver extra")
    assert "pip install 'websockets" in line and "'pocketsphinx" in line
    assert "report" not in line and "Traceback" not in r.stderr


@pytest.mark.slow
def test_the_readmes_file_backend_recipe_works_as_written(tmp_path):
    """The README's 'Try a config without hardware': its first block (the server) started and
    waited for, its second run by bash in an empty folder, as written but for a free port in
    place of 8765: exit 0, the tool runs, the answer is spoken into reply.wav."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Try a config without hardware", 1)[1].split("\n## ", 1)[0]
    server_block, client_block = re.findall(r"```sh\n(.*?)```", section, re.S)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    assert server_block.count("8765") == client_block.count("8765") == 1
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("MIRA_API_KEY", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    server = subprocess.Popen(["bash", "-c", "exec " + server_block.strip().replace("8765", port)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    client = None
    try:
        assert "listening" in server.stdout.readline()
        # its own process group: on a timeout the daemon it started goes too, not only bash
        client = subprocess.Popen(["bash", "-e", "-c", client_block.replace("8765", port)], cwd=tmp_path,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)
        out, err = client.communicate(timeout=120)
    finally:
        if client is not None and client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
        server.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        assert server.wait(15) == 0
    assert client.returncode == 0, out + err
    assert "tool 'set_light' ok" in err and "assistant: Done: light on=true" in err
    assert len(read_wav(tmp_path / "reply.wav")) > SAMPLE_RATE // 2

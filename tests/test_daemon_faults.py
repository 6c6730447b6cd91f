"""Never dead, never deaf, never lying: a real `mira-agent run` child with hardware absent or late, nothing
to start a conversation, and reloads through the unit's own ExecReload line.

Sound cards are a PulseAudio null sink (paced in real time, like a card; it can start after the
daemon: a device that appears late) or WAV files where the audio does not matter; systemd is
stood in for as in test_daemon_service.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.demo import write_wav

from daemon_process import KEY, ROOT, Daemon, notify  # noqa: F401 - notify is a fixture
from fixtures_audio import PulseServer, pulseaudio_available

UNIT = ROOT / "systemd" / "mira-agent.service"
SHIPPED_EXEC = "/opt/mira-agent/venv/bin/mira-agent"
HEARS = '[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n'
DEAF = '[wake]\nengine = "none"\n'

pytestmark = pytest.mark.slow


def write_config(folder: Path, audio: str = "", wake: str = HEARS) -> Path:
    """A sound-card config (no echo canceller: nothing to cancel here) on a loopback URL."""
    path = folder / "agent.toml"
    path.write_text(f'[server]\nurl = "ws://127.0.0.1:9/v1/realtime"\n[audio]\n{audio}\n'
                    f'[echo]\nenabled = false\n{wake}')
    return path


def file_audio(folder: Path) -> str:
    """[audio] lines for WAV files: a minute of silence in, a file out."""
    write_wav(folder / "in.wav", np.zeros(60 * SAMPLE_RATE, np.int16))
    return 'backend = "file"\ninput_file = "in.wav"\noutput_file = "out.wav"'


needs_pulse = pytest.mark.skipif(not pulseaudio_available(),
                                 reason="needs pulseaudio, pulseaudio-utils, libasound2-plugins")


def start(folder: Path, notify, env: dict[str, str], config: Path | None = None) -> Daemon:
    (folder / "run").mkdir(exist_ok=True)
    return Daemon(folder, config or folder / "agent.toml", notify, RUNTIME_DIRECTORY=str(folder / "run"),
                  **env)


def exec_reload(daemon: Daemon) -> subprocess.CompletedProcess:
    """The unit's ExecReload line, run as systemd would: $MAINPID filled in, the unit's
    RUNTIME_DIRECTORY, the installed program replaced by this checkout's."""
    (line,) = [x.split("=", 1)[1] for x in UNIT.read_text().splitlines() if x.startswith("ExecReload=")]
    argv = shlex.split(line.replace("$MAINPID", str(daemon.proc.pid)))
    assert argv[0] == SHIPPED_EXEC, argv
    env = {**os.environ, "RUNTIME_DIRECTORY": str(daemon.folder / "run")}
    return subprocess.run([sys.executable, "-m", "agent.cli", *argv[1:]], capture_output=True,
                          text=True, timeout=90, cwd=ROOT, env=env)


def status_at(notify, index: int) -> str:
    (line,) = [x for x in notify.messages[index][1] if x.startswith("STATUS=")]
    return line.removeprefix("STATUS=")


def stop(daemon: Daemon) -> int:
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        return daemon.proc.wait(15)
    finally:
        daemon.stop()


@needs_pulse
def test_sound_server_that_starts_after_the_daemon_is_waited_for(tmp_path, notify):
    """No sound device at start (PulseAudio not up yet): READY=1 with an ERROR status naming the
    speaker and the fix, no exit; once the server starts, both devices open and it goes IDLE."""
    server = PulseServer(tmp_path)
    write_config(tmp_path)
    daemon = start(tmp_path, notify, server.env)
    try:
        ready = notify.wait("READY=1", timeout=30)
        said = status_at(notify, ready)
        assert said.startswith("error: speaker cannot be opened: there is no default output device"), said
        assert "mira-agent devices" in said and said.endswith("waiting for it")
        assert daemon.proc.poll() is None
        server.start()
        idle = notify.wait("STATUS=idle:*", start=ready + 1, timeout=30)
        assert daemon.proc.poll() is None, daemon.stderr
        code = stop(daemon)
    finally:
        daemon.stop()
        server.stop()
    err = daemon.stderr
    assert code == 0, err
    assert "speaker found and opened" in err and "microphone found and opened" in err, err
    assert "Traceback" not in err and KEY not in err
    assert idle > ready


@needs_pulse
def test_speaker_that_matches_nothing_is_an_error_state_and_a_restart_only_reload_says_so(tmp_path, notify):
    """[audio] output_device naming no device: READY=1, STATUS=error with the key and the fix, the
    process stays up. A reload that corrects it is accepted through ExecReload, and says that
    audio.output_device applies only after a restart (it does not pretend to have applied it)."""
    server = PulseServer(tmp_path).start()
    write_config(tmp_path, 'output_device = "USB Audio"')
    daemon = start(tmp_path, notify, server.env)
    try:
        ready = notify.wait("READY=1", timeout=30)
        said = status_at(notify, ready)
        assert said.startswith("error: speaker cannot be opened: [audio] output_device = 'USB Audio' "
                               "matches no output device"), said
        write_config(tmp_path, 'output_device = "default"')
        r = exec_reload(daemon)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip() == ("config reloaded; audio.output_device changed and apply only after "
                                    "a restart (sudo systemctl restart mira-agent)")
        daemon.wait_log("apply only after a restart")
        assert daemon.proc.poll() is None
        code = stop(daemon)
    finally:
        daemon.stop()
        server.stop()
    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr


def test_nothing_to_start_a_conversation_is_an_error_until_a_reload_adds_the_wake_word(tmp_path, notify):
    """No wake word and no button: READY=1 says ERROR 'nothing can start a conversation' (not
    'idle: waiting for the wake word or the button'); a reload adding the wake word makes it IDLE."""
    audio = file_audio(tmp_path)
    write_config(tmp_path, audio, wake=DEAF)
    daemon = start(tmp_path, notify, {})
    try:
        ready = notify.wait("READY=1", timeout=30)
        said = status_at(notify, ready)
        assert said.startswith("error: nothing can start a conversation: the wake word is off and no "
                               "talk button is set"), said
        write_config(tmp_path, audio, wake=HEARS)
        r = exec_reload(daemon)
        assert r.returncode == 0 and r.stdout.strip() == "config reloaded", r.stdout + r.stderr
        idle = notify.wait("STATUS=idle:*", start=ready + 1, timeout=20)
        code = stop(daemon)
    finally:
        daemon.stop()
    assert code == 0 and idle > ready, daemon.stderr
    assert "nothing can start a conversation" in daemon.stderr  # the log says it too


def test_missing_wake_model_file_exits_78_and_a_reload_to_one_is_refused(tmp_path, notify):
    """[wake] model naming a missing file: `run` exits 78 with the setting's sentence (systemd does
    not retry); while running, a reload to such a config fails `systemctl reload` with the reason
    and the old config stays."""
    audio = file_audio(tmp_path)
    write_config(tmp_path, audio, wake='[wake]\nmodel = "models/mine.tflite"\n')
    first = start(tmp_path, notify, {})
    try:
        code = first.proc.wait(30)
    finally:
        first.stop()
    assert code == 78, first.stderr
    (line,) = first.stderr.strip().splitlines()
    assert "[wake] model = 'models/mine.tflite'" in line and "does not exist" in line, line

    write_config(tmp_path, audio)
    daemon = start(tmp_path, notify, {})
    try:
        ready = notify.wait("READY=1", timeout=30)
        assert status_at(notify, ready) == "idle: waiting for the wake word"
        write_config(tmp_path, audio, wake='[wake]\nmodel = "models/mine.tflite"\n')
        r = exec_reload(daemon)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "refused" in r.stderr and "models/mine.tflite" in r.stderr and "does not exist" in r.stderr
        assert daemon.proc.poll() is None
        code = stop(daemon)
    finally:
        daemon.stop()
    assert code == 0, daemon.stderr


def test_start_and_a_stop_while_connecting_print_only_our_own_log_lines(tmp_path, notify):
    """A wake model loads (TFLite announces its XNNPACK delegate on fd 2) and SIGTERM arrives while
    the connection hangs in its handshake (a reader thread outlives the loop, holding native
    resamplers): stderr holds only the daemon's own log lines, no library chatter."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)  # accepts TCP, never answers the WebSocket handshake
        config = write_config(tmp_path, file_audio(tmp_path))
        config.write_text(config.read_text().replace("127.0.0.1:9", f"127.0.0.1:{silent.getsockname()[1]}"))
        daemon = Daemon(tmp_path, config, notify, "--trigger-on-start")
        try:
            notify.wait("STATUS=connecting:*", timeout=30)
            code = stop(daemon)
        finally:
            daemon.stop()
    assert code == 0, daemon.stderr
    lines = daemon.stderr.splitlines()
    ours = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO|WARNING|ERROR) ")
    assert lines and all(ours.match(line) for line in lines), "\n".join(lines)
    assert "received SIGTERM" in daemon.stderr


def test_sound_cards_without_pyaudio_is_a_config_error(tmp_path, notify):
    """[audio] backend = "alsa" where PyAudio cannot be imported can never work: exit 78 with the
    extra to install, not an endless wait for a device."""
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["pyaudio"] = None\n')
    write_config(tmp_path)
    daemon = start(tmp_path, notify, {"PYTHONPATH": str(tmp_path)})
    try:
        code = daemon.proc.wait(30)
    finally:
        daemon.stop()
    assert code == 78, daemon.stderr
    (line,) = daemon.stderr.strip().splitlines()[-1:]
    assert 'backend = "alsa" needs PyAudio' in line and "mira-agent[alsa]" in line


@pytest.mark.parametrize("button, deaf", [
    ("", True),
    ("[button]\npin = 17\n", False),
    ('[button]\nencoder_switch_pin = 5\nencoder_switch = "talk"\n', False),
    ('[button]\nencoder_switch_pin = 5\nencoder_switch = "mute"\n', True),
], ids=["nothing", "talk-button", "encoder-talk", "encoder-mute"])
def test_what_counts_as_a_way_to_start_a_conversation(tmp_path, pins, button, deaf):
    """With the wake word off, a talk button or an encoder push set to talk (on gpiozero's mock
    pins) is a way to start a conversation; a mute switch is not."""
    from agent import config as config_mod
    from agent.daemon import Faults, Parts, build_conversation

    path = write_config(tmp_path, file_audio(tmp_path), wake=DEAF + button)
    faults, parts = Faults(), Parts()
    try:
        build_conversation(config_mod.load(path), parts, api_key=KEY, faults=faults)
    finally:
        parts.close()
    assert (faults.sentence or "").startswith("nothing can start a conversation") is deaf, faults.sentence


def test_logging_speech_false_keeps_the_words_out_of_the_log(tmp_path):
    """A whole conversation with [logging] speech = false: neither what the user said nor the
    answer is in the log, each such line says how many words it left out, and the state changes
    stay; the same run with the default shows the words (so the test can tell)."""
    from agent.demo import user_audio
    from agent.devserver import DevServer
    from harness import file_config

    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Hello.")], trailing_s=3.0))
    logs = {}
    with DevServer(api_key=KEY) as server:
        for speech in ("true", "false"):
            config = file_config(tmp_path, server.url, f"[logging]\nspeech = {speech}\n")
            r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--config", str(config),
                                "--exit-when-done", "--trigger-on-start"], capture_output=True, text=True,
                               timeout=90, cwd=ROOT, env={**os.environ, "MIRA_API_KEY": KEY})
            assert r.returncode == 0, r.stderr
            logs[speech] = r.stderr
    assert "user: hello" in logs["true"] and "Hello! I am the Mira dev server." in logs["true"]
    hidden = logs["false"]
    assert "hello" not in hidden.lower().replace("[", " ") and "dev server" not in hidden
    assert "user: [1 word not logged]" in hidden, hidden
    assert re.search(r"assistant: \[\d+ words not logged\]", hidden), hidden
    assert "state listening -> thinking" in hidden and "session closed" in hidden

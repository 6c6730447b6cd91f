"""Offline answers through the real `mira-agent run` process on the file backend: real espeak-ng
speech, nothing listening at the server's address (or no DNS, or a refused key), the command
recognised and acted on, the spoken answer found in the speaker's output; then the service comes
back and the next turn goes to it, with the timer set offline still running."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from agent.audio.wavfile import read_wav
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from agent.devserver.script import Call, Entry, Script
from agent.offline.answers import OFFLINE_SENTENCE
from agent.offline.voice import Voice
from daemon_process import SYSTEMD_ENV, Daemon, notify  # noqa: F401 (a fixture)
from harness import KEY, file_config, needs_offline_extra

pytestmark = [pytest.mark.slow,
              needs_offline_extra]
ROOT = Path(__file__).resolve().parent.parent
VOICE = Voice("en-us", 165)  # [offline]'s defaults: the daemon's answers are made the same way


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(text: str, trailing_s: float = 3.0) -> np.ndarray:
    return user_audio([(0.3, text)], trailing_s=trailing_s)


def run(folder: Path, pcm: np.ndarray, url: str, extra: str = "", *, wrap: list[str] = (),
        timeout: float = 60) -> subprocess.CompletedProcess:
    """`mira-agent run --exit-when-done --trigger-on-start` on `pcm`; the volume is kept in folder."""
    write_wav(folder / "in.wav", pcm)
    file_config(folder, url, extra)
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    env.update(MIRA_API_KEY=KEY, STATE_DIRECTORY=str(folder))
    args = [*wrap, sys.executable, "-m", "agent.cli", "run", "--config", str(folder / "agent.toml"),
            "--exit-when-done", "--trigger-on-start"]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def answers(log: str) -> list[str]:
    return re.findall(r"assistant \(offline\): (.*?) \[speech=True\]", log)


def similarity(out: np.ndarray, ref: np.ndarray) -> float:
    """Highest normalised cross-correlation of ref against any stretch of out (1.0: found exactly,
    at any volume)."""
    out, ref = out.astype(np.float64), ref.astype(np.float64)
    if len(out) < len(ref) or not ref.any():
        return 0.0
    size = 1 << (len(out) + len(ref)).bit_length()
    corr = np.fft.irfft(np.fft.rfft(out, size) * np.conj(np.fft.rfft(ref, size)), size)
    corr = corr[:len(out) - len(ref) + 1]
    energy = np.concatenate([[0.0], np.cumsum(out ** 2)])
    window = energy[len(ref):] - energy[:-len(ref)]
    return float(np.max(corr / (np.sqrt(np.maximum(window, 1e-9) * np.sum(ref ** 2)))))


def spoken(folder: Path, text: str) -> float:
    """How surely the answer `text`, spoken by the offline voice, is in the speaker's output."""
    return similarity(read_wav(folder / "out.wav"), VOICE.say(text))


@pytest.mark.parametrize("said, answer", [
    ("Set the volume to thirty.", "Volume 30."),
    ("Turn it up.", "Volume 90."),
    ("Stop.", "Okay."),
    ("Mute.", "Microphone off. Press the button to turn it back on."),
])
def test_with_nothing_listening_a_spoken_command_is_acted_on_and_answered(tmp_path, said, answer):
    """Nothing listens at the server's port: the first connection is refused, the turn's audio
    goes to the device's recogniser, the built-in tool runs (the volume is saved, the microphone
    muted) and the answer is spoken into the output; exit 0 (what was asked was done)."""
    r = run(tmp_path, command(said), f"ws://127.0.0.1:{closed_port()}/v1/realtime")
    assert r.returncode == 0, r.stderr
    assert "refused the connection" in r.stderr and "turn dropped" not in r.stderr
    assert answers(r.stderr) == [answer]
    assert spoken(tmp_path, answer) > 0.98
    if said.startswith("Set the volume"):
        assert (tmp_path / "volume").read_text().strip() == "30"
    if said.startswith("Turn it up"):
        assert (tmp_path / "volume").read_text().strip() == "90"  # [audio] volume 80, one step up
    if said.startswith("Mute"):
        assert "-> muted" in r.stderr


def test_with_nothing_listening_a_timer_is_set_offline_and_rings(tmp_path):
    """"Set a timer for three seconds": set through the timer tool, answered, and it rings."""
    r = run(tmp_path, command("Set a timer for three seconds.", trailing_s=7.0),
            f"ws://127.0.0.1:{closed_port()}/v1/realtime")
    assert r.returncode == 0, r.stderr
    assert answers(r.stderr) == ["Timer set for 3 seconds."]
    assert spoken(tmp_path, "Timer set for 3 seconds.") > 0.98
    assert "timer 1 set for 3 s" in r.stderr and "timer 1 is ringing" in r.stderr
    # the speaker waits in OFFLINE (STATUS=, LEDs), saying why
    assert re.search(r"-> offline \(.*the service cannot be reached: ", r.stderr)


def test_an_unknown_command_gets_the_offline_sentence_and_exit_1(tmp_path):
    """A sentence that is no offline command: nothing is run, the offline sentence is spoken, and
    the run exits 1 (what was asked could not be done)."""
    r = run(tmp_path, command("Read me the news."), f"ws://127.0.0.1:{closed_port()}/v1/realtime")
    assert r.returncode == 1, r.stderr
    assert answers(r.stderr) == [OFFLINE_SENTENCE]
    assert spoken(tmp_path, OFFLINE_SENTENCE) > 0.98
    assert "tool '" not in r.stderr and not (tmp_path / "volume").exists()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="the no-DNS case swaps /etc/resolv.conf in a private mount namespace: run the "
                           "tests as root with unshare (util-linux) to include it")
def test_with_no_dns_the_time_is_told(tmp_path):
    """The real service's name cannot be resolved (a private resolv.conf names 127.0.0.1, where
    no DNS server listens, so nothing leaves loopback): offline, and the time is told."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    wrap = ["unshare", "-m", "sh", "-c", f'mount --bind "{resolv}" /etc/resolv.conf && exec "$0" "$@"']
    before = datetime.now()
    r = run(tmp_path, command("What time is it?"), "wss://api.vmira.ai/v1/realtime", wrap=wrap)
    assert r.returncode == 0, r.stderr
    assert "cannot resolve api.vmira.ai (DNS)" in r.stderr
    [said] = answers(r.stderr)
    told = datetime.strptime(said, "It's %I:%M %p.").time()
    assert any(told.hour == t.hour and told.minute == t.minute for t in (before, datetime.now()))
    assert spoken(tmp_path, said) > 0.98


def test_a_refused_key_is_not_offline(tmp_path):
    """The server answers and refuses the key: ERROR and exit 78, never OFFLINE, no offline answer."""
    with DevServer(api_key="sk-some-other-key") as server:
        r = run(tmp_path, command("What time is it?"), server.url)
    assert r.returncode == 78, r.stderr
    assert "refused the API key" in r.stderr and "-> error" in r.stderr
    assert "offline" not in r.stderr.replace("offline]", "")  # not the state, not an answer


LEFT = Script(entries=(Entry("how long is left on my timer", calls=(Call("timer", {"action": "list"}),)),),
              prefixes=("hey jarvis",))


def test_the_link_returns_and_the_next_turn_goes_to_the_server_with_the_offline_timer(tmp_path):
    """Offline, a timer is set by voice; the service comes back on its port (the daemon's probe
    finds it and leaves OFFLINE by itself); the next wake word opens a session, and the model's
    timer tool lists the timer set offline, still running."""
    port = closed_port()
    pcm = user_audio([(0.3, "Hey Jarvis, set a pasta timer for two minutes."),
                      (22.0, "Hey Jarvis, how long is left on my timer?")], trailing_s=6.0)
    write_wav(tmp_path / "in.wav", pcm)
    file_config(tmp_path, f"ws://127.0.0.1:{port}/v1/realtime",
                "[offline]\ncheck_interval_s = 5\n[session]\nfollow_up_s = 1.0\n",
                wake='[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n')
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
    err = open(tmp_path / "stderr.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                             str(tmp_path / "agent.toml"), "--exit-when-done"], cwd=ROOT,
                            env={**env, "MIRA_API_KEY": KEY}, stdout=subprocess.DEVNULL, stderr=err)
    log = tmp_path / "stderr.log"
    server = DevServer(api_key=KEY, port=port, script=LEFT)
    try:
        deadline = time.monotonic() + 30
        while "-> offline" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        server.start()
        proc.wait(90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        err.close()
        server.stop()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert answers(text) == ["Pasta timer set for 2 minutes."]
    assert re.search(r"offline -> idle \(the service answers again\)", text), text
    [session] = server.sessions
    [output] = session.function_outputs
    [timer] = json.loads(output["output"])["timers"]
    assert timer["label"] == "pasta" and 60 < timer["remaining_s"] < 115  # set ~25 s before


def test_status_and_hooks_say_offline(tmp_path, notify):
    """systemd's STATUS= and a [hooks] program see the state offline, with why."""
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\necho "$MIRA_EVENT $MIRA_STATE" >> states.txt\n')
    hook.chmod(0o755)
    write_wav(tmp_path / "in.wav", command("Stop.", trailing_s=20.0))
    path = file_config(tmp_path, f"ws://127.0.0.1:{closed_port()}/v1/realtime",
                       '[hooks]\nargv = ["./hook.sh"]\nevents = ["state"]\n')
    daemon = Daemon(tmp_path, path, notify, "--trigger-on-start")
    try:
        at = notify.wait("STATUS=offline: *", timeout=30)
        [(_, status)] = notify.lines("STATUS=offline", at, at + 1)
        assert "the service cannot be reached: " in status and "127.0.0.1" in status
        deadline = time.monotonic() + 10
        while "state offline" not in ((tmp_path / "states.txt").read_text()
                                      if (tmp_path / "states.txt").exists() else ""):
            assert time.monotonic() < deadline, daemon.stderr
            time.sleep(0.05)
    finally:
        daemon.stop()

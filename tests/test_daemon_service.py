"""The daemon as systemd runs it: a real `mira-agent run` child speaking sd_notify, signals, check, devices.

systemd is stood in for by what it is to the daemon: a datagram socket named in NOTIFY_SOCKET, a
WATCHDOG_USEC, and signals. The Realtime server is the local DevServer on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent import config as config_mod
from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.audio.wavfile import WavMicrophone, WavSpeaker, read_wav
from agent.conversation import Conversation
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from agent.service.logs import setup_logging
from agent.service.notify import Notifier, Watchdog
from agent.state import State
from daemon_process import KEY, Daemon, NotifySocket, notify  # noqa: F401 - a fixture; NotifySocket for test_hooks
from harness import file_config

ROOT = Path(__file__).resolve().parent.parent
STATES = {s.value for s in State}
# WatchdogSec=2 s (the unit's is 20 s): the daemon feeds it every second. Shorter, a shared machine
# that does not schedule the process for half a second (seen: 0.4-0.9 s, the loop idle in its
# queue wait) would fail the test, though systemd would not restart a daemon for that.
WATCHDOG_USEC = 2_000_000
def states_of(status_lines: list[tuple[float, str]]) -> list[str]:
    return [line.removeprefix("STATUS=").split(":")[0] for _, line in status_lines]


# --- a real daemon process -----------------------------------------------------------------

@pytest.mark.slow
def test_notify_protocol_through_a_conversation_and_sigterm_while_speaking(tmp_path, notify):
    """READY=1 first, STATUS=<state>: <reason> per change, WATCHDOG=1 every < WatchdogSec, and a
    SIGTERM mid-reply: STOPPING=1, close 1000, exit 0 within 2 s."""
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Tell me a story.")], trailing_s=20.0))
    with DevServer(api_key=KEY) as server:
        daemon = Daemon(tmp_path, file_config(tmp_path, server.url), notify, "--trigger-on-start",
                        WATCHDOG_USEC=str(WATCHDOG_USEC))
        try:
            ready = notify.wait("READY=1", timeout=20)
            speaking = notify.wait("STATUS=speaking:*", start=ready, timeout=30)
            time.sleep(1.0)  # well into the story (it lasts far longer)
            assert daemon.proc.poll() is None
            daemon.proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            code = daemon.proc.wait(10)
            took = time.monotonic() - sent
            stopping = notify.wait("STOPPING=1", start=speaking, timeout=2)
        finally:
            daemon.stop()
        session = server.recorder.wait_for(lambda: server.sessions[-1].closed and server.sessions[-1],
                                           timeout=5)
    err = daemon.stderr
    assert code == 0, err
    assert took <= 2.0, took
    assert session.close_code == 1000
    played = len(read_wav(tmp_path / "out.wav"))  # earcon + the reply as far as it got
    assert SAMPLE_RATE <= played < len(session.replies[0].audio) // 2  # cut short, not finished

    # READY=1 comes first (nothing is reported before the parts are up) and says what it waits for.
    assert ready == 0, notify.messages[:2]
    assert any(x.startswith("STATUS=idle: ") for x in notify.messages[0][1]), notify.messages[0]
    # Every STATUS= is "<state>: <reason>", one line a person reads in `systemctl status`.
    status = notify.lines("STATUS=", 0, stopping)
    for _, line in status:
        assert re.fullmatch(r"STATUS=([a-z_]+): \S.*", line), line
        assert line.removeprefix("STATUS=").split(":")[0] in STATES, line
    seen = states_of(notify.lines("STATUS=", 1, stopping))
    order = [seen.index(s) for s in ("connecting", "listening", "thinking", "speaking")]
    assert order == sorted(order), seen
    assert any("first reply audio" in line for _, line in status), status
    assert "STATUS=stopping" in notify.messages[stopping][1], notify.messages[stopping]
    # The watchdog: fed from READY=1 to STOPPING=1, never a gap as long as WatchdogSec.
    start_t, stop_t = notify.messages[ready][0], notify.messages[stopping][0]
    kicks = [t for t, _ in notify.lines("WATCHDOG=1", ready, stopping)]
    assert len(kicks) >= 2, (kicks, stop_t - start_t)  # fed again and again, not once
    gaps = np.diff([start_t, *kicks, stop_t])
    assert gaps.max() < WATCHDOG_USEC / 1e6, gaps.max()
    assert "received SIGTERM" in err and "Traceback" not in err and KEY not in err


@pytest.mark.slow
@pytest.mark.parametrize("audio, extra, named", [
    ('input_file = "missing.wav"\noutput_file = "out.wav"', "", "missing.wav"),
    ('input_file = "in.wav"\noutput_file = "gone/out.wav"', "", "gone/out.wav"),
    ('input_file = "in.wav"\noutput_file = "out.wav"', '[sounds]\nwake = "chime.wav"', "chime.wav"),
], ids=["microphone", "speaker", "earcon"])
def test_no_ready_when_a_part_cannot_open(tmp_path, notify, audio, extra, named):
    """A microphone, speaker or sound that cannot open: exit non-zero naming it, never READY=1."""
    write_wav(tmp_path / "in.wav", np.zeros(SAMPLE_RATE, np.int16))
    (tmp_path / "agent.toml").write_text(f'[server]\nurl = "ws://127.0.0.1:9/v1/realtime"\n'
                                         f'[audio]\nbackend = "file"\n{audio}\n{extra}\n')
    daemon = Daemon(tmp_path, tmp_path / "agent.toml", notify)
    try:
        code = daemon.proc.wait(30)
    finally:
        daemon.stop()
    time.sleep(0.1)  # a datagram sent just before the exit is already queued; let it be read
    err = daemon.stderr
    assert code not in (0, None), err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3, err
    assert notify.lines("READY=1") == [], notify.messages


@pytest.mark.slow
def test_sighup_reloads_a_valid_config_and_refuses_an_invalid_one(tmp_path, notify):
    """SIGHUP: RELOADING=1 then READY=1 and 'configuration reloaded'; a bad key is named in the log
    and the old config stays (the next session still uses the reloaded voice)."""
    write_wav(tmp_path / "in.wav", user_audio([(4.0, "Hey Jarvis, hello.")], trailing_s=6.0))
    wake = '[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n'
    with DevServer(api_key=KEY) as server:
        config = file_config(tmp_path, server.url, '[session]\nvoice = "aria"\n', wake=wake)
        daemon = Daemon(tmp_path, config, notify)
        try:
            ready = notify.wait("READY=1", timeout=20)
            file_config(tmp_path, server.url, '[session]\nvoice = "verse"\n[sounds]\nenabled = false\n',
                        wake=wake)
            daemon.proc.send_signal(signal.SIGHUP)
            reloading = notify.wait("RELOADING=1", start=ready + 1, timeout=5)
            again = notify.wait("READY=1", start=reloading, timeout=5)
            daemon.wait_log("configuration reloaded")
            assert notify.lines("STATUS=", again, again + 1) == [(notify.messages[again][0],
                                                                  "STATUS=idle: config reloaded")]

            file_config(tmp_path, server.url, '[session]\nvoice = "alloy"\nvoise = "echo"\n', wake=wake)
            daemon.proc.send_signal(signal.SIGHUP)
            refused_at = notify.wait("RELOADING=1", start=again + 1, timeout=5)
            still = notify.wait("READY=1", start=refused_at, timeout=5)
            daemon.wait_log("session.voise: unknown key")
            (_, status), = notify.lines("STATUS=", still, still + 1)
            assert status.startswith("STATUS=idle: new config refused") and "session.voise" in status
            assert daemon.proc.poll() is None

            # The wake word opens a session configured by the last good config.
            session = server.recorder.wait_for(lambda: server.sessions and any(
                e.get("type") == "session.update" for e in server.sessions[0].client_events)
                and server.sessions[0], timeout=20)
            assert daemon.proc.poll() is None
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(10)
        finally:
            daemon.stop()
    err = daemon.stderr
    (update,) = [e for e in session.client_events if e.get("type") == "session.update"]
    assert update["session"]["voice"] == "verse"
    assert code == 0, err
    refused = [line for line in err.splitlines() if "session.voise" in line]
    assert refused and "refused" in refused[0] and "ERROR" in refused[0], err
    assert "RELOADING=1" in notify.messages[reloading][1] and \
        any(x.startswith("MONOTONIC_USEC=") for x in notify.messages[reloading][1])
    assert "Traceback" not in err and KEY not in err


@pytest.mark.slow
def test_sighup_applies_new_wake_settings_and_tools_without_a_restart(tmp_path, notify):
    """Started with no wake word and no tools; SIGHUP with a wake model and a tool: the next words
    "Hey Jarvis" open a session, and its session.update declares the new tool."""
    write_wav(tmp_path / "in.wav", user_audio([(4.0, "Hey Jarvis, hello.")], trailing_s=6.0))
    tool = ('[toolbox]\nbuiltins = []\n[[tools]]\nname = "porch_light"\n'
            'description = "Switch the porch light on."\nparameters = { type = "object" }\n'
            'action = { kind = "command", argv = ["true"] }\n')
    with DevServer(api_key=KEY) as server:
        config = file_config(tmp_path, server.url, '[toolbox]\nbuiltins = []\n')
        daemon = Daemon(tmp_path, config, notify)
        try:
            ready = notify.wait("READY=1", timeout=20)
            file_config(tmp_path, server.url, tool,
                        wake='[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n')
            daemon.proc.send_signal(signal.SIGHUP)
            notify.wait("READY=1", start=ready + 1, timeout=10)
            daemon.wait_log("configuration reloaded")
            session = server.recorder.wait_for(lambda: server.sessions and any(
                e.get("type") == "session.update" for e in server.sessions[0].client_events)
                and server.sessions[0], timeout=10)
            daemon.proc.send_signal(signal.SIGTERM)
            code = daemon.proc.wait(10)
        except TimeoutError:
            raise AssertionError("after the reload, 'Hey Jarvis' opened no session: the new [wake] "
                                 f"settings were not applied; log: {daemon.stderr}") from None
        finally:
            daemon.stop()
    (update,) = [e for e in session.client_events if e.get("type") == "session.update"]
    assert [t["name"] for t in update["session"].get("tools", [])] == ["porch_light"], update
    assert code == 0 and "wake word hey_jarvis heard" in daemon.stderr, daemon.stderr


# --- the loop and the watchdog, in process -------------------------------------------------

class HangingLights:
    """State LEDs whose driver can hang (a stuck SPI write): show() blocks while `hang` is set."""

    def __init__(self):
        self.hang = threading.Event()
        self.release = threading.Event()
        self.stuck = threading.Event()
        self.shown: list[State] = []

    def show(self, state: State) -> None:
        self.shown.append(state)
        if self.hang.is_set():
            self.stuck.set()
            self.release.wait(10)

    def close(self) -> None:
        self.release.set()


class Journal:
    """Stands in for journald: keeps each entry's MESSAGE and upper-case fields."""

    def __init__(self):
        self.entries: list[dict] = []

    def __call__(self, MESSAGE, **fields):  # noqa: N803 - systemd.journal.send's signature
        self.entries.append({"MESSAGE": MESSAGE, **{k: v for k, v in fields.items() if k.isupper()}})


class Loop:
    """A Conversation on a silent WAV microphone with no server contact, run on a thread."""

    def __init__(self, folder: Path, watchdog: Watchdog | None = None):
        write_wav(folder / "silence.wav", np.zeros(30 * SAMPLE_RATE, np.int16))
        cfg = config_mod.parse({"server": {"url": "ws://127.0.0.1:9/v1/realtime"},
                                "audio": {"backend": "file", "input_file": "silence.wav",
                                          "output_file": "out.wav"},
                                "wake": {"engine": "none"}}, folder / "agent.toml")
        self.lights = HangingLights()
        self.speaker = WavSpeaker(folder / "out.wav")
        self.conversation = Conversation(cfg, api_key=KEY, mic=WavMicrophone(folder / "silence.wav"),
                                         speaker=self.speaker, lights=self.lights, watchdog=watchdog)
        self.thread = threading.Thread(target=self.conversation.run, daemon=True)

    def __enter__(self) -> Loop:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.lights.release.set()
        self.conversation.stop()
        self.thread.join(5)
        self.speaker.close()
        assert not self.thread.is_alive()


@pytest.mark.slow
def test_a_stalled_loop_stops_watchdog_and_a_recovered_one_resumes_it(tmp_path, notify):
    """The loop hangs in a part it calls (the LEDs): WATCHDOG=1 stops for as long; after, it resumes."""
    interval = 0.4
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": notify.path}, backend="socket"), interval_s=interval)
    with Loop(tmp_path, dog) as loop:
        notify.wait("WATCHDOG=1", timeout=2)
        time.sleep(1.0)
        healthy = notify.lines("WATCHDOG=1")
        assert len(healthy) >= 2, healthy  # fed again and again while it turns (every interval/2)

        loop.lights.hang.set()
        loop.conversation.on_button("long_press")  # muting shows a new state: the driver hangs
        assert loop.lights.stuck.wait(2)
        time.sleep(0.05)  # a kick sent just before the hang may still be in flight
        hung_at, before = time.monotonic(), notify.count()
        time.sleep(3 * interval)
        assert notify.lines("WATCHDOG=1", before) == []  # systemd would now restart the service
        sent_while_hung = dog.sent

        loop.lights.hang.clear()
        loop.lights.release.set()
        resumed = notify.wait("WATCHDOG=1", start=before, timeout=5.0)
        assert notify.messages[resumed][0] - hung_at >= 3 * interval
        # The counter follows the sends: it is bumped just after the datagram the test saw left.
        deadline = time.monotonic() + 5
        while dog.sent == sent_while_hung and time.monotonic() < deadline:
            time.sleep(0.01)
        assert dog.sent > sent_while_hung
        assert loop.conversation.state is State.MUTED


def test_state_changes_reach_the_journal_as_a_STATE_field(tmp_path, clean_logging):
    """Under systemd (journal handler) each transition's entry carries STATE=<state>."""
    journal = Journal()
    setup_logging("info", journal=True, sender=journal)
    with Loop(tmp_path) as loop:
        loop.conversation.on_button("long_press")
        deadline = time.monotonic() + 2
        while State.MUTED not in loop.lights.shown and time.monotonic() < deadline:
            time.sleep(0.01)
    entries = [e for e in journal.entries if e.get("LOGGER") == "agent.conversation"]
    assert {"MESSAGE": "started, idle", "STATE": "idle"}.items() <= entries[0].items(), entries
    muted = [e for e in entries if e["MESSAGE"].startswith("state idle -> muted")]
    assert muted and muted[0]["STATE"] == "muted" and muted[0]["PRIORITY"] == "6", entries


# --- mira-agent check and devices as a person runs them ------------------------------------

def _cli(*args: str, env: dict[str, str] | None = None,
         drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=full)


ROWS = ("config", "API key", "microphone", "speaker", "wake word", "GPIO", "trigger", "server")


def _row(out: str, name: str) -> str:
    (line,) = [x for x in out.splitlines() if re.match(rf"  \S+\s+{re.escape(name)}  ", x)]
    return line


@pytest.mark.slow
def test_check_prints_every_row_and_passes_on_a_good_config(tmp_path):
    """`mira-agent check`: one row per part, a real session with the devserver, exit 0, the key never shown."""
    write_wav(tmp_path / "in.wav", np.zeros(FRAME_SAMPLES, np.int16))
    with DevServer(api_key=KEY) as server:
        config = file_config(tmp_path, server.url,
                             wake='[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n')
        r = _cli("check", "--config", str(config), env={"MIRA_API_KEY": KEY},
                 drop=("CREDENTIALS_DIRECTORY",))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ROWS:
        assert _row(r.stdout, name)
    assert _row(r.stdout, "server").split()[0] == "ok" and "a session opened and closed" in _row(r.stdout, "server")
    assert len(server.sessions) == 1
    assert _row(r.stdout, "wake word").split()[0] == "ok" and "hey_jarvis" in _row(r.stdout, "wake word")
    assert _row(r.stdout, "API key").split()[0] == "ok"
    assert r.stdout.rstrip().endswith("all good.")
    assert KEY not in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr


@pytest.mark.slow
def test_check_without_a_key_fails_with_the_fix(tmp_path):
    """No key anywhere: the API key row fails with how to store it, no session is tried; exit non-zero."""
    write_wav(tmp_path / "in.wav", np.zeros(FRAME_SAMPLES, np.int16))
    with DevServer(api_key=KEY) as server:
        config = file_config(tmp_path, server.url)
        r = _cli("check", "--config", str(config), drop=("MIRA_API_KEY", "CREDENTIALS_DIRECTORY"))
    assert r.returncode != 0, r.stdout + r.stderr
    line = _row(r.stdout, "API key")
    assert line.split()[0] == "FAIL" and "no API key" in line
    fix = r.stdout.splitlines()[r.stdout.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix: ") and "--key-stdin" in fix
    assert _row(r.stdout, "server").split()[0] == "-" and server.sessions == []
    assert "2 problems found." in r.stdout  # the key, and the trigger (no wake word, no button) and "Traceback" not in r.stdout + r.stderr


def test_devices_on_this_machine_prints_a_table_or_a_sentence_and_exits_0():
    """`mira-agent devices` with no config, on whatever cards the host has (CI: none): exit 0, a table
    or a sentence saying there is no sound card, never a traceback."""
    r = _cli("devices", env={"JACK_NO_START_SERVER": "1"}, drop=("ALSA_CONFIG_PATH",))
    assert "Traceback" not in r.stdout + r.stderr
    assert "Input devices" in r.stdout or "no sound card" in r.stdout.lower(), r.stdout
    assert r.returncode == 0, r.stdout


def test_devices_lists_a_virtual_card_in_a_table(tmp_path):
    """A card PortAudio can open: the Input and Output tables list it, the default marked."""
    (tmp_path / "asound.conf").write_text(
        "pcm.mic { type null }\npcm.spk { type null }\n"
        'pcm.!default { type asym capture.pcm "mic" playback.pcm "spk" }\n')
    r = _cli("devices", env={"ALSA_CONFIG_PATH": str(tmp_path / "asound.conf"), "JACK_NO_START_SERVER": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Input devices" in r.stdout and "Output devices" in r.stdout
    assert re.search(r"^ \*\s+\d+\s+default \(default\)", r.stdout, re.M), r.stdout
    assert "Traceback" not in r.stdout + r.stderr

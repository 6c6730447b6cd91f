"""[hooks]: a real program run on each state change and event, with the details in its
environment, never holding up the conversation; the runner in process, then a real daemon.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from agent.config import parse
from agent.demo import user_audio, write_wav
from agent.devserver import DevServer
from agent.errors import ConfigError
from agent.hooks import CLOSE_GRACE_S, HookRunner, HookSettings
from agent.state import State
from harness import file_config
from test_daemon_service import Daemon, NotifySocket

KEY = "sk-mira-hooks-test"
# What /bin/sh itself puts in a child's environment: not the daemon's doing.
SHELL_VARS = {"PWD", "SHLVL", "_", "OLDPWD"}

RECORD = """#!/bin/sh
# One block per run: the environment, then a separator.
{ env; echo "--"; } >> "$1"
"""
HANG = """#!/bin/sh
echo started >> runs.log
sleep 30
"""
FAIL = """#!/bin/sh
echo ran >> runs.log
echo "relay board not found on /dev/ttyUSB0" >&2
exit 3
"""


def script(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def recorded(path: Path) -> list[dict[str, str]]:
    """The environments the record script saw, in order."""
    runs, current = [], {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if line == "--":
            runs.append(current)
            current = {}
        elif "=" in line:
            k, v = line.split("=", 1)
            current[k] = v
    return runs


def wait_runs(path: Path, n: int, timeout: float = 10.0) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while len(runs := recorded(path)) < n:
        assert time.monotonic() < deadline, f"{len(runs)} of {n} hook runs: {runs}"
        time.sleep(0.02)
    return runs


def runner(folder: Path, argv: list[str], **kw) -> HookRunner:
    settings = HookSettings(argv=argv, **kw)
    return HookRunner(settings, lambda p: Path(p) if Path(p).is_absolute() else folder / p,
                      secrets=(KEY,))


# --- the runner, with real programs ----------------------------------------------------------

def test_each_event_runs_the_program_in_order_with_its_details_in_the_environment(tmp_path, monkeypatch):
    """state, wake_word, tool_called, error and volume each run the script once, in order, with
    MIRA_EVENT, MIRA_STATE, MIRA_PREVIOUS_STATE (state only) and one MIRA_<NAME> per detail;
    only PATH and env_allow come from the daemon's environment."""
    script(tmp_path, "record.sh", RECORD)
    monkeypatch.setenv("MIRA_API_KEY", KEY)
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("HOME", "/root")
    hooks = runner(tmp_path, ["./record.sh", "events.txt"], env_allow=["LANG"])
    try:
        hooks.event("wake_word", {"model": "hey_jarvis", "score": 0.934})
        hooks.state(State.CONNECTING, "wake word")
        hooks.state(State.LISTENING, "session ready")
        hooks.event("tool_called", {"name": "set_light", "ok": True})
        hooks.event("error", {"message": f"server said: bad key {KEY}\0!"})
        hooks.volume(65)
        runs = wait_runs(tmp_path / "events.txt", 6)
    finally:
        hooks.close()
    assert [r["MIRA_EVENT"] for r in runs] == ["wake_word", "state", "state", "tool_called",
                                               "error", "volume"]
    wake, connecting, listening, tool, error, volume = runs
    assert (wake["MIRA_STATE"], wake["MIRA_MODEL"], wake["MIRA_SCORE"]) == ("idle", "hey_jarvis", "0.934")
    assert (connecting["MIRA_PREVIOUS_STATE"], connecting["MIRA_STATE"], connecting["MIRA_REASON"]) == \
        ("idle", "connecting", "wake word")
    assert (listening["MIRA_PREVIOUS_STATE"], listening["MIRA_STATE"]) == ("connecting", "listening")
    assert (tool["MIRA_NAME"], tool["MIRA_OK"], tool["MIRA_STATE"]) == ("set_light", "true", "listening")
    assert error["MIRA_MESSAGE"] == "server said: bad key ***!"  # the key blanked, the NUL gone
    assert volume["MIRA_LEVEL"] == "65"
    for run in runs:
        assert run["PATH"] == os.environ["PATH"] and run["LANG"] == "C.UTF-8"
        assert set(run) - SHELL_VARS - {"PATH", "LANG"} == {k for k in run if k.startswith("MIRA_")}
        assert "MIRA_API_KEY" not in run and "HOME" not in run
        assert "MIRA_PREVIOUS_STATE" in run or run["MIRA_EVENT"] != "state"


def test_events_not_chosen_do_not_run_it_and_the_state_still_follows(tmp_path):
    """events = ["session_closed"]: state changes run nothing, yet MIRA_STATE is the current one."""
    script(tmp_path, "record.sh", RECORD)
    hooks = runner(tmp_path, ["./record.sh", "events.txt"], events=["session_closed"])
    try:
        hooks.state(State.LISTENING, "session ready")
        hooks.event("session_closed", {"reason": "no follow-up for 8 s", "summary": "connected 9.1 s"})
        (run,) = wait_runs(tmp_path / "events.txt", 1)
        time.sleep(0.2)
    finally:
        hooks.close()
    assert len(recorded(tmp_path / "events.txt")) == 1
    assert (run["MIRA_EVENT"], run["MIRA_STATE"], run["MIRA_SUMMARY"]) == \
        ("session_closed", "listening", "connected 9.1 s")


def test_handing_an_event_over_never_waits_for_a_hanging_program(tmp_path, caplog):
    """While the program hangs, 50 state changes are handed over at once; it is killed at
    timeout_s with one log line, and the queue beyond `backlog` is skipped with one line."""
    script(tmp_path, "hang.sh", HANG)
    hooks = runner(tmp_path, ["./hang.sh"], timeout_s=0.5, backlog=3)
    try:
        with caplog.at_level(logging.WARNING):
            t0 = time.perf_counter()
            for i in range(50):
                hooks.state(State.THINKING if i % 2 else State.LISTENING, "test")
            took = time.perf_counter() - t0
            deadline = time.monotonic() + 10
            while hooks.runs < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        hooks.close()
    assert took < 0.5  # 50 hand-overs, not one 0.5 s run
    timeouts = [r for r in caplog.records if "timed out after 0.5 s" in r.getMessage()]
    skipped = [r for r in caplog.records if "event(s) skipped" in r.getMessage()]
    assert len(timeouts) == 1 and timeouts[0].getMessage().startswith("hooks: state hook: hang.sh")
    assert len(skipped) == 1
    assert 2 <= hooks.runs <= 5  # the first, then what the backlog kept


def test_a_failing_program_is_logged_once_with_its_stderr(tmp_path, caplog):
    """Exit status 3 on every event: each run happens, one warning names the status and stderr."""
    script(tmp_path, "fail.sh", FAIL)
    hooks = runner(tmp_path, ["./fail.sh"])
    with caplog.at_level(logging.WARNING):
        for state in (State.CONNECTING, State.LISTENING, State.THINKING, State.SPEAKING):
            hooks.state(state, "test")
        deadline = time.monotonic() + 10
        while hooks.runs < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        hooks.close()
    assert (tmp_path / "runs.log").read_text().count("ran") == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.hooks"]
    assert lines == ["hooks: state hook: fail.sh exited with status 3: "
                     "relay board not found on /dev/ttyUSB0"]


def test_close_gives_a_hanging_program_a_grace_then_kills_it(tmp_path):
    """At exit a hook still running gets CLOSE_GRACE_S, then it and its children are killed."""
    script(tmp_path, "hang.sh", HANG)
    hooks = runner(tmp_path, ["./hang.sh"], timeout_s=30)
    hooks.state(State.LISTENING, "test")
    deadline = time.monotonic() + 5
    while not (tmp_path / "runs.log").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc = hooks._proc
    t0 = time.monotonic()
    hooks.close()
    took = time.monotonic() - t0
    hooks.close()
    assert proc is not None and proc.poll() is not None  # the program is gone
    assert took < CLOSE_GRACE_S + 3  # not the 30 s timeout


def test_without_argv_nothing_runs_and_no_thread_starts(tmp_path):
    """An empty [hooks] argv is off: events are dropped on the spot."""
    hooks = runner(tmp_path, [])
    hooks.state(State.LISTENING, "test")
    assert hooks._thread is None and hooks.runs == 0
    hooks.close()


def test_a_missing_program_is_warned_at_start_and_each_failure_logged_once(tmp_path, caplog):
    """argv naming no program: a warning when configured; the runs fail with one line."""
    with caplog.at_level(logging.WARNING):
        hooks = runner(tmp_path, ["./nowhere.sh"])
        hooks.state(State.LISTENING, "test")
        hooks.state(State.THINKING, "test")
        deadline = time.monotonic() + 5
        while hooks.runs < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        hooks.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "agent.hooks"]
    assert messages[0].endswith("nowhere.sh is not an executable program (yet); each event will say so")
    assert messages[1:] == ["hooks: state hook: cannot start nowhere.sh: No such file or directory"]


@pytest.mark.parametrize("data, named", [
    ({"hooks": {"env_allow": ["MIRA_API_KEY"]}}, "hooks.env_allow: Value error, 'MIRA_API_KEY' looks like a secret"),
    ({"hooks": {"events": ["state", "wakeword"]}}, "hooks.events[1]"),
    ({"hooks": {"timeout_s": 0}}, "hooks.timeout_s"),
])
def test_bad_hook_settings_name_the_key(data, named):
    """Config errors name the hooks key (a secret-looking variable is refused outright)."""
    with pytest.raises(ConfigError) as e:
        parse(data)
    assert named.replace("Value error, ", "") in str(e.value)


# --- a real daemon ---------------------------------------------------------------------------

def _daemon_toml(folder: Path, url: str, hooks: str, wake: bool) -> Path:
    tool = ('[[tools]]\nname = "set_light"\ndescription = "Switch the light."\n'
            'parameters = { type = "object", properties = { on = { type = "boolean" } } }\n'
            'action = { kind = "command", argv = ["true"] }\n')
    return file_config(folder, url, f'[session]\nfollow_up_s = 1.5\n[hooks]\n{hooks}\n{tool}',
                       wake='[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n' if wake
                       else '[wake]\nengine = "none"\n')


@pytest.mark.slow
def test_a_real_daemon_runs_the_hook_on_every_state_and_event(tmp_path):
    """`mira-agent run`: "Hey Jarvis, turn on the light." gives the hook wake_word (model, score),
    each state change in the log's order with its previous state, session_opened (host),
    tool_called (set_light, ok) and session_closed (its cost summary); never the key."""
    script(tmp_path, "record.sh", RECORD)
    write_wav(tmp_path / "in.wav", user_audio([(0.5, "Hey Jarvis, turn on the light.")], trailing_s=6.0))
    notify = NotifySocket(tmp_path)
    with DevServer(api_key=KEY) as server:
        config = _daemon_toml(tmp_path, server.url, 'argv = ["./record.sh", "events.txt"]', wake=True)
        daemon = Daemon(tmp_path, config, notify, "--exit-when-done", MIRA_API_KEY=KEY)
        try:
            code = daemon.proc.wait(90)
        finally:
            daemon.stop()
            notify.close()
        port = server.url.split(":")[2].split("/")[0]
    err = daemon.stderr
    assert code == 0, err
    runs = recorded(tmp_path / "events.txt")
    events = [r["MIRA_EVENT"] for r in runs]
    logged = re.findall(r"state (\w+) -> (\w+) \((.*)\)", err)
    states = [(r["MIRA_PREVIOUS_STATE"], r["MIRA_STATE"], r["MIRA_REASON"]) for r in runs
              if r["MIRA_EVENT"] == "state"]
    assert states[0][1:] == ("idle", "started")
    assert states[1:] == logged, (states, logged)
    assert events.index("wake_word") < events.index("session_opened") < events.index("tool_called") \
        < events.index("session_closed")
    wake = runs[events.index("wake_word")]
    assert wake["MIRA_MODEL"] == "hey_jarvis" and 0 < float(wake["MIRA_SCORE"]) <= 1
    assert wake["MIRA_STATE"] == "idle"
    assert runs[events.index("session_opened")]["MIRA_HOST"] == "127.0.0.1"
    tool = runs[events.index("tool_called")]
    assert (tool["MIRA_NAME"], tool["MIRA_OK"]) == ("set_light", "true")
    closed = runs[events.index("session_closed")]
    assert closed["MIRA_SUMMARY"].startswith("connected ") and closed["MIRA_REASON"]
    assert all(KEY not in v for r in runs for v in r.values())
    assert "Traceback" not in err and KEY not in err


@pytest.mark.slow
@pytest.mark.parametrize("body, logged", [
    (HANG, "timed out after 1.5 s and was stopped"),
    (FAIL, "exited with status 3: relay board not found on /dev/ttyUSB0"),
], ids=["hangs", "fails"])
def test_a_hook_that_hangs_or_fails_never_stalls_the_loop_and_is_logged_once(tmp_path, body, logged):
    """A whole conversation with a hook that sleeps 30 s (or fails) on every event: the loop's
    longest stall, from its watchdog kicks every 50 ms, stays far below the hook's 1.5 s
    timeout, every state is reached, and the journal gets one line about the hook."""
    script(tmp_path, "hook.sh", body)
    write_wav(tmp_path / "in.wav", user_audio([(0.3, "Hello.")], trailing_s=5.0))
    notify = NotifySocket(tmp_path)
    with DevServer(api_key=KEY) as server:
        config = _daemon_toml(tmp_path, server.url, 'argv = ["./hook.sh"]\ntimeout_s = 1.5', wake=False)
        daemon = Daemon(tmp_path, config, notify, "--trigger-on-start", "--exit-when-done",
                        WATCHDOG_USEC="100000", MIRA_API_KEY=KEY)
        try:
            code = daemon.proc.wait(60)
            stopping = notify.wait("STOPPING=1", timeout=5)
        finally:
            daemon.stop()
            notify.close()
    err = daemon.stderr
    assert code == 0, err
    ready = notify.wait("READY=1")
    kicks = [t for t, _ in notify.lines("WATCHDOG=1", ready, stopping)]
    stall = float(np.diff([notify.messages[ready][0], *kicks, notify.messages[stopping][0]]).max())
    assert stall < 1.0, stall  # a loop waiting on the hook would stall >= 1.5 s at the first event
    seen = re.findall(r"state \w+ -> (\w+)", err)
    assert seen[:4] == ["connecting", "listening", "thinking", "speaking"] and seen[-1] == "idle", seen
    assert len([line for line in err.splitlines() if "hooks: " in line and logged in line]) == 1, err
    assert "Traceback" not in err and (tmp_path / "runs.log").exists()


# --- the examples in hardware/hooks/ -----------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "hardware" / "hooks"
FAKE_CURL = """#!/bin/sh
# Stands in for curl at the network's edge: keeps its arguments, one line per call.
printf '%s\\n' "$*" >> "$CALLS"
"""
FAKE_MPC = """#!/bin/sh
# Stands in for mpc: the volume lives in a file.
if [ "$1" = volume ]; then cat "$MPD_VOLUME"; exit 0; fi
if [ "$1" = -q ] && [ "$2" = volume ]; then printf 'volume: %s%%   repeat: off\\n' "$3" > "$MPD_VOLUME"; fi
"""


def fake_tools(folder: Path, monkeypatch) -> Path:
    """A bin folder with curl and mpc stand-ins, first on PATH; their records go under folder."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    script(bin_dir, "curl", FAKE_CURL.replace("$CALLS", str(folder / "curl.calls")))
    script(bin_dir, "mpc", FAKE_MPC.replace("$MPD_VOLUME", str(folder / "mpd.volume")))
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def test_the_wled_example_posts_each_states_colour_and_effect(tmp_path, monkeypatch):
    """hardware/hooks/wled.sh through the runner: one POST per state to <url>/json/state, the
    colour and effect of that state; other events post nothing."""
    fake_tools(tmp_path, monkeypatch)
    hooks = runner(tmp_path, [str(EXAMPLES / "wled.sh"), "http://127.0.0.1:8080"])
    try:
        hooks.event("wake_word", {"model": "hey_jarvis", "score": 0.9})
        for state in (State.LISTENING, State.SPEAKING, State.MUTED, State.IDLE):
            hooks.state(state, "test")
        deadline = time.monotonic() + 10
        while hooks.runs < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hooks.close()
    calls = (tmp_path / "curl.calls").read_text().splitlines()
    bodies = [c.split(" -d ")[1].rsplit(" ", 1) for c in calls]
    assert [url for _, url in bodies] == ["http://127.0.0.1:8080/json/state"] * 4
    assert [body for body, _ in bodies] == [
        '{"on":true,"seg":[{"fx":0,"col":[[0,0,255]]}]}',
        '{"on":true,"seg":[{"fx":2,"col":[[0,255,0]]}]}',
        '{"on":true,"seg":[{"fx":0,"col":[[255,0,0]]}]}',
        '{"on":false}']


def test_the_duck_music_example_lowers_mpd_and_restores_it(tmp_path, monkeypatch):
    """hardware/hooks/duck-music.sh: session_opened sets MPD to 15 % and keeps the 70 % it had in
    $STATE_DIRECTORY; session_closed puts 70 % back."""
    fake_tools(tmp_path, monkeypatch)
    (tmp_path / "mpd.volume").write_text("volume: 70%   repeat: off\n")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state_dir))
    hooks = runner(tmp_path, [str(EXAMPLES / "duck-music.sh"), "15"],
                   events=["session_opened", "session_closed"], env_allow=["STATE_DIRECTORY"])
    try:
        hooks.event("session_opened", {"host": "api.vmira.ai"})
        deadline = time.monotonic() + 10
        while not (ducked := (tmp_path / "mpd.volume").read_text()).startswith("volume: 15%") \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        hooks.event("session_closed", {"reason": "no follow-up", "summary": "connected 5.0 s"})
    finally:
        hooks.close()
    assert ducked.startswith("volume: 15%")
    assert (tmp_path / "mpd.volume").read_text().startswith("volume: 70%")
    assert list(state_dir.iterdir()) == []


def test_the_examples_pass_shellcheck():
    """The example scripts are portable sh (shellcheck, installed by `make setup`)."""
    import shutil
    import subprocess
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (make setup installs it)")
    done = subprocess.run(["shellcheck", *sorted(str(p) for p in EXAMPLES.glob("*.sh"))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_a_reload_gives_the_runner_the_new_hook(tmp_path):
    """SIGHUP's rebuild_parts hands the new [hooks] to the running runner: the next event runs
    the new program (with the reloaded key blanked in its details)."""
    from agent.config import parse as parse_config
    from agent.daemon import Parts, rebuild_parts

    script(tmp_path, "record.sh", RECORD)
    old = parse_config({}, tmp_path / "agent.toml")
    new = parse_config({"hooks": {"argv": ["./record.sh", "events.txt"]}}, tmp_path / "agent.toml")
    parts = Parts()
    parts.hooks = HookRunner(old.settings.hooks, old.resolve)
    try:
        parts.hooks.state(State.LISTENING, "before the reload")
        rebuild_parts(old, new, parts, lambda event: None, api_key="sk-mira-reloaded")
        parts.hooks.event("error", {"message": "bad key sk-mira-reloaded"})
        (run,) = wait_runs(tmp_path / "events.txt", 1)
    finally:
        parts.close()
        parts.hooks.close()
    assert (run["MIRA_EVENT"], run["MIRA_STATE"], run["MIRA_MESSAGE"]) == ("error", "listening", "bad key ***")

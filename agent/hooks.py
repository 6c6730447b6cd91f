"""State hooks: a program of the maker's run on each state change and named event.

    [hooks]
    argv = ["./leds.sh"]

runs leds.sh with MIRA_EVENT=state MIRA_STATE=listening MIRA_PREVIOUS_STATE=connecting
MIRA_REASON="session ready", or MIRA_EVENT=wake_word MIRA_MODEL=hey_jarvis MIRA_SCORE=0.93, ...
(one MIRA_<NAME> per detail). It runs like a command tool (agent/tools/command.py): argv without
a shell, PATH and the allowed variables only, its own process group killed at the timeout.

The conversation thread only appends the event to a queue; one worker thread runs the program,
one event at a time and in order, so a hook that hangs or fails never delays a state change.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Literal, get_args

from pydantic import Field, field_validator

from agent.errors import MiraAgentError
from agent.ratelog import RateLimitedLog
from agent.secrets import redact
from agent.section import Section
from agent.state import State
from agent.tools.command import environment, kill_group, program_path, run_program
from agent.tools.settings import check_env_names

log = logging.getLogger(__name__)

Event = Literal["state", "wake_word", "session_opened", "session_closed", "tool_called", "error",
                "volume"]
EVENTS: tuple[str, ...] = get_args(Event)
MAX_VALUE_CHARS = 2000  # a detail longer than this is cut (an environment is no place for a log)
CLOSE_GRACE_S = 1.0     # at exit, queued events get this long to run before the hook is killed
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)


class HookSettings(Section):
    """[hooks]: a program run on each state change and named event, the details in its environment."""

    argv: list[str] = []
    """Program and arguments, never a shell (a path with a / is relative to the config's folder);
    empty: no hook."""
    events: list[Event] = list(EVENTS)
    """What runs it: state (every state change), wake_word, session_opened, session_closed,
    tool_called, error, volume (a volume button or knob)."""
    timeout_s: float = Field(5.0, gt=0, le=60)
    """Seconds before the program and its children are killed (later events wait meanwhile)."""
    cwd: str = ""
    """Working directory (relative to the config file's folder); empty: that folder."""
    env_allow: list[str] = []
    """Environment variables passed through from the daemon's, besides PATH (never a key or token)."""
    max_output_bytes: int = Field(1024, ge=1, le=16384)
    """Bytes of the program's output read per run; its stderr's tail goes in the log when it fails."""
    backlog: int = Field(32, ge=1, le=1000)
    """Events kept waiting while the program runs; past this the oldest are skipped (and logged)."""

    @field_validator("env_allow")
    @classmethod
    def _env_names(cls, names: list[str]) -> list[str]:
        for n in check_env_names(names):
            if _SECRET_NAME.search(n):
                raise ValueError(f"{n!r} looks like a secret; hooks never get keys or tokens")
        return names


def _env_value(value: Any, secrets: tuple[str, ...]) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, State):
        text = value.value
    else:
        text = "" if value is None else str(value)
    return redact(text.replace("\0", ""), *secrets)[:MAX_VALUE_CHARS]


class HookRunner:
    """Runs the [hooks] program for each event, in order, on its own thread.

    state() and event() are the Conversation's on_state and on_event; volume() is the volume
    knob's. They only append to a queue and return.
    """

    def __init__(self, settings: HookSettings, resolve: Callable[[str], Path], *,
                 secrets: tuple[str, ...] = ()):
        self._wake = threading.Condition()
        self._queue: deque[tuple[str, dict[str, Any], str, str]] = deque()
        self._skipped = 0
        self._closed = False     # no new events; the worker ends when the queue is empty
        self._stopping = False   # the grace is over: the running program is killed
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._state = State.IDLE.value
        self._ratelog = RateLimitedLog(log)
        self.runs = 0
        """How many times the program was started."""
        self.configure(settings, resolve, secrets=secrets)

    def configure(self, settings: HookSettings, resolve: Callable[[str], Path], *,
                  secrets: tuple[str, ...] = ()) -> None:
        """Use these settings from the next event on (a reloaded config)."""
        if settings.argv:
            exe = program_path(settings.argv[0], resolve)
            if shutil.which(exe, path=environment(settings.env_allow)["PATH"]) is None:
                log.warning("hooks: %s is not an executable program (yet); each event will say so",
                            exe)
        with self._wake:
            self._settings, self._resolve, self._secrets = settings, resolve, tuple(secrets)
            if settings.argv and self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._work, name="hooks", daemon=True)
                self._thread.start()

    # -- what the conversation thread calls: append and return ------------------------------

    def state(self, state: State, reason: str) -> None:
        previous, self._state = self._state, state.value
        self._add("state", {"reason": reason}, previous)

    def event(self, name: str, details: dict[str, Any]) -> None:
        self._add(name, details, self._state)

    def volume(self, level: int) -> None:
        self._add("volume", {"level": level}, self._state)

    def _add(self, name: str, details: dict[str, Any], previous: str) -> None:
        with self._wake:
            s = self._settings
            if not s.argv or name not in s.events or self._closed:
                return
            if len(self._queue) >= s.backlog:
                self._queue.popleft()
                self._skipped += 1
            self._queue.append((name, details, self._state, previous))
            self._wake.notify()

    # -- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if not self._queue:
                    return
                name, details, state, previous = self._queue.popleft()
                skipped, self._skipped = self._skipped, 0
                s, resolve, secrets = self._settings, self._resolve, self._secrets
            if skipped:
                self._ratelog(logging.WARNING, "skipped", f"hooks: {skipped} event(s) skipped: the "
                              f"program is slower than the events (see [hooks] timeout_s, backlog)")
            self._run(s, resolve, secrets, name, details, state, previous)

    def _run(self, s: HookSettings, resolve, secrets, name, details, state, previous) -> None:
        env = environment(s.env_allow)
        env.update(MIRA_EVENT=name, MIRA_STATE=state)
        if name == "state":
            env["MIRA_PREVIOUS_STATE"] = previous
        for key, value in details.items():
            env[f"MIRA_{key.upper()}"] = _env_value(value, secrets)
        argv = [program_path(s.argv[0], resolve), *s.argv[1:]]
        self.runs += 1
        try:
            run_program(argv, cwd=resolve(s.cwd or "."), env=env, timeout_s=s.timeout_s,
                        max_output_bytes=s.max_output_bytes, started=self._started)
        except MiraAgentError as e:
            if not self._stopping:  # at most one line a minute, counting the ones held back
                self._ratelog(logging.WARNING, "failed", f"hooks: {name} hook: {e}")
        finally:
            with self._wake:
                self._proc = None

    def _started(self, proc: subprocess.Popen) -> None:
        with self._wake:
            self._proc = proc
            stopping = self._stopping
        if stopping:
            kill_group(proc)

    def close(self) -> None:
        """Let queued events run for up to CLOSE_GRACE_S, then stop the program; safe twice."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
            thread = self._thread
        if thread is None:
            return
        thread.join(CLOSE_GRACE_S)
        with self._wake:
            self._stopping = True
            self._queue.clear()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            kill_group(proc)
        thread.join(CLOSE_GRACE_S)


def open_hooks(settings: HookSettings, resolve: Callable[[str], Path], *,
               secrets: tuple[str, ...] = ()) -> HookRunner:
    """The hook runner of [hooks] (it does nothing while argv is empty, until a reload sets it)."""
    return HookRunner(settings, resolve, secrets=secrets)



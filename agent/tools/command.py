"""The command action: a program run from an argv list (never a shell), bounded in time and output."""

import json
import os
import selectors
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from agent.errors import ToolError
from agent.tools import placeholders
from agent.tools.settings import CommandAction

STDERR_TAIL_BYTES = 500
_CHUNK = 65536


def build_argv(action: CommandAction, arguments: dict[str, Any]) -> list[str]:
    """argv with each element's placeholders filled; an argument stays inside its element."""
    argv = []
    for i, template in enumerate(action.argv):
        try:
            element = placeholders.fill(template, arguments)
        except ValueError as e:
            raise ToolError(str(e)) from None
        parts = placeholders.parse(template)
        # "-rf" in the first position of an element would read as an option, not a value.
        if (i > 0 and parts and isinstance(parts[0], tuple) and element.startswith("-")
                and isinstance(arguments.get(parts[0][0]), str) and "--" not in action.argv[1:i]):
            raise ToolError(f"argument {parts[0][0]!r} starts with '-' and would be read as an "
                            f"option; give a value without a leading '-'")
        argv.append(element)
    return argv


def environment(allow: list[str]) -> dict[str, str]:
    """PATH plus the allowed variables that are set in the daemon's environment."""
    env = {k: os.environ[k] for k in allow if k in os.environ}
    env["PATH"] = os.environ.get("PATH", os.defpath)
    return env


def program(action: CommandAction, resolve: Callable[[str], Path]) -> str:
    """argv[0]: a path with a / is relative to the config folder; a bare name is looked up in PATH."""
    return str(resolve(action.argv[0])) if "/" in action.argv[0] else action.argv[0]


def find_program(action: CommandAction, resolve: Callable[[str], Path]) -> str | None:
    """Where the program is, or None when it cannot be found (checked at start, for a warning)."""
    return shutil.which(program(action, resolve), path=environment(action.env_allow)["PATH"])


def run_command(action: CommandAction, arguments: dict[str, Any],
                resolve: Callable[[str], Path]) -> str:
    """The program's stdout (bounded); ToolError on a timeout, a start failure or a non-zero exit."""
    argv = build_argv(action, arguments)
    argv[0] = program(action, resolve)
    cwd = resolve(action.cwd or ".")
    if not cwd.is_dir():
        raise ToolError(f"the working directory {cwd} does not exist")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd,
                                env=environment(action.env_allow), start_new_session=True)
    except OSError as e:
        raise ToolError(f"cannot start {Path(argv[0]).name}: {e.strerror or e}") from None
    with proc:
        out, err, finished = _collect(proc, action.max_output_bytes, time.monotonic() + action.timeout_s)
        if not finished:
            _kill_group(proc)
            raise ToolError(f"{Path(argv[0]).name} timed out after {action.timeout_s:g} s and was "
                            f"stopped")
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        tail = err.decode("utf-8", "replace").strip()
        raise ToolError(f"{Path(argv[0]).name} {how}" + (f": {tail}" if tail else ""))
    text = out[0].decode("utf-8", "replace").rstrip()
    if out[1]:
        text += " [output truncated]"
    return text or json.dumps({"ok": True})


def _collect(proc: subprocess.Popen, max_out: int, deadline: float):
    """((stdout kept, truncated), stderr tail, finished in time); reads both pipes to EOF."""
    out, err, truncated = bytearray(), bytearray(), False
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return (bytes(out), truncated), bytes(err), False
            for key, _ in sel.select(left):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.data == "out":
                    room = max_out - len(out)
                    out += chunk[:room]  # past the limit, read on and drop: the program never blocks
                    truncated |= len(chunk) > room
                else:
                    err = (err + chunk)[-STDERR_TAIL_BYTES:]
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return (bytes(out), truncated), bytes(err), False
    return (bytes(out), truncated), bytes(err), True


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program and everything it started (its own session and process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

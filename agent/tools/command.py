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
    return program_path(action.argv[0], resolve)


def program_path(name: str, resolve: Callable[[str], Path]) -> str:
    """A program named in the config: a path with a / relative to the config folder, else a bare name."""
    return str(resolve(name)) if "/" in name else name


def find_program(action: CommandAction, resolve: Callable[[str], Path]) -> str | None:
    """Where the program is, or None when it cannot be found (checked at start, for a warning)."""
    return shutil.which(program(action, resolve), path=environment(action.env_allow)["PATH"])


def run_command(action: CommandAction, arguments: dict[str, Any],
                resolve: Callable[[str], Path]) -> str:
    """The program's stdout (bounded); ToolError on a timeout, a start failure or a non-zero exit."""
    argv = build_argv(action, arguments)
    argv[0] = program(action, resolve)
    out, truncated = run_program(argv, cwd=resolve(action.cwd or "."), env=environment(action.env_allow),
                                 timeout_s=action.timeout_s, max_output_bytes=action.max_output_bytes)
    text = out.decode("utf-8", "replace").rstrip()
    if truncated:
        text += " [output truncated]"
    return text or json.dumps({"ok": True})


def run_program(argv: list[str], *, cwd: Path, env: dict[str, str], timeout_s: float,
                max_output_bytes: int,
                started: Callable[[subprocess.Popen], None] | None = None) -> tuple[bytes, bool]:
    """Run argv (no shell, stdin empty, its own session) to its end: (stdout kept, truncated).

    ToolError, naming the program, on a start failure, a timeout (it and everything it started are
    killed) or a non-zero exit (with the tail of its stderr). `started` gets the process at once.
    """
    if not cwd.is_dir():
        raise ToolError(f"the working directory {cwd} does not exist")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
    except OSError as e:
        raise ToolError(f"cannot start {Path(argv[0]).name}: {e.strerror or e}") from None
    if started is not None:
        started(proc)
    with proc:
        out, err, finished = _collect(proc, max_output_bytes, time.monotonic() + timeout_s)
        if not finished:
            kill_group(proc)
            raise ToolError(f"{Path(argv[0]).name} timed out after {timeout_s:g} s and was stopped")
    if proc.returncode != 0:
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        tail = err.decode("utf-8", "replace").strip()
        raise ToolError(f"{Path(argv[0]).name} {how}" + (f": {tail}" if tail else ""))
    return out


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


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the program and everything it started (its own session and process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

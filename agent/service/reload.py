"""`systemctl reload` that fails when the new config is refused: SIGHUP, then the daemon's verdict.

A signal carries no answer, so the daemon writes the outcome of each reload to a small file in
its runtime directory ($RUNTIME_DIRECTORY, from the unit's RuntimeDirectory=), and the unit's
ExecReload (`mira-agent reload --pid $MAINPID`) sends SIGHUP and waits for that file to name the
pid and a newer reload count. Its exit status and its one printed line are what
`systemctl reload` shows.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import MiraAgentError

RESULT_NAME = "reload-result.json"


@dataclass(frozen=True)
class Verdict:
    """One reload's outcome, as the daemon wrote it."""

    pid: int
    """The daemon's process id."""
    count: int
    """How many reloads this process has handled (1 for the first)."""
    ok: bool
    """False when the new config was refused (the old one stays)."""
    message: str
    """What a person reads: 'configuration reloaded', what a restart is needed for, or why refused."""


def _result_path(runtime_dir: str | None) -> Path | None:
    folder = runtime_dir if runtime_dir is not None else os.environ.get("RUNTIME_DIRECTORY", "")
    # systemd lists several folders separated by ':' when RuntimeDirectory= names several.
    return Path(folder.split(":")[0]) / RESULT_NAME if folder else None


class ReloadRecorder:
    """The daemon's side: write each reload's verdict (nothing without a runtime directory)."""

    def __init__(self, runtime_dir: str | None = None):
        self._path = _result_path(runtime_dir)
        self._count = 0

    def record(self, ok: bool, message: str) -> None:
        """Write this reload's verdict atomically (a reader never sees half a file)."""
        self._count += 1
        if self._path is None:
            return
        verdict = {"pid": os.getpid(), "count": self._count, "ok": ok, "message": message}
        tmp = self._path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(verdict), encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError:
            pass  # the reload itself happened; only its reporting to `systemctl reload` is lost


def read_verdict(path: Path) -> Verdict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Verdict(int(data["pid"]), int(data["count"]), bool(data["ok"]), str(data["message"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def request_reload(pid: int, *, runtime_dir: str | None = None, timeout_s: float = 60.0) -> Verdict:
    """SIGHUP the daemon and wait for its verdict on the new config; MiraAgentError if none comes."""
    path = _result_path(runtime_dir)
    if path is None:
        raise MiraAgentError("mira-agent reload needs RUNTIME_DIRECTORY (the unit's RuntimeDirectory=) "
                             "to read the daemon's answer; outside systemd send SIGHUP yourself: "
                             f"kill -HUP {pid}")
    before = read_verdict(path)
    seen = before.count if before is not None and before.pid == pid else 0
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise MiraAgentError(f"no mira-agent process {pid} to reload: is the service running? "
                             "(systemctl status mira-agent)") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        verdict = read_verdict(path)
        if verdict is not None and verdict.pid == pid and verdict.count > seen:
            return verdict
        time.sleep(0.05)
    raise MiraAgentError(f"mira-agent {pid} did not answer the reload within {timeout_s:g} s; see "
                         "journalctl -u mira-agent")


def main(pid: int, timeout_s: float = 60.0) -> int:
    """`mira-agent reload --pid PID`: 0 and the daemon's line when applied; a refusal raises
    MiraAgentError with its reason (exit 1)."""
    verdict = request_reload(pid, timeout_s=timeout_s)
    if not verdict.ok:
        raise MiraAgentError(verdict.message)
    print(verdict.message, flush=True)
    return 0

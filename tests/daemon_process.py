"""A real `mira-agent run` child as systemd runs it: NOTIFY_SOCKET read by a bound socket, stderr kept.

systemd is stood in for by what it is to the daemon: a datagram socket named in NOTIFY_SOCKET, a
WATCHDOG_USEC, a RUNTIME_DIRECTORY, and signals.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-mira-daemon-service-test"

# What systemd would set for the test runner itself must not leak into the daemon under test.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "CREDENTIALS_DIRECTORY")


class NotifySocket:
    """systemd's end of NOTIFY_SOCKET: a bound datagram socket; a thread keeps (arrival, lines)."""

    def __init__(self, folder: Path):
        self.path = str(folder / "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.05)
        self.messages: list[tuple[float, list[str]]] = []
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                self.messages.append((time.monotonic(), data.decode().split("\n")))
                self._changed.notify_all()

    def wait(self, line: str, start: int = 0, timeout: float = 20.0) -> int:
        """Index of the first message from `start` on with a line equal to (or, ending in '*',
        starting with) `line`."""
        def match(lines):
            return any(x.startswith(line[:-1]) if line.endswith("*") else x == line for x in lines)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for i in range(start, len(self.messages)):
                    if match(self.messages[i][1]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {line} within {timeout} s; got {self.messages}")
                self._changed.wait(min(left, 0.1))

    def count(self) -> int:
        with self._changed:
            return len(self.messages)

    def lines(self, prefix: str, start: int = 0, end: int | None = None) -> list[tuple[float, str]]:
        with self._changed:
            return [(t, x) for t, lines in self.messages[start:end] for x in lines if x.startswith(prefix)]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        self._sock.close()


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path)
    yield sock
    sock.close()


class Daemon:
    """`python -m agent.cli run --config F` with systemd's environment; stderr goes to a file."""

    def __init__(self, folder: Path, config: Path, notify: NotifySocket, *args: str, **env: str):
        self.folder = folder
        self.err_path = folder / "stderr.log"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(config), *args], cwd=ROOT,
            env={**{k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV},
                 "MIRA_API_KEY": KEY, "NOTIFY_SOCKET": notify.path, **env},
            stdout=subprocess.DEVNULL, stderr=self._err)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_log(self, text: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            assert self.proc.poll() is None, f"the daemon exited ({self.proc.returncode}): {self.stderr}"
            assert time.monotonic() < deadline, f"no log line {text!r}: {self.stderr}"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self._err.close()

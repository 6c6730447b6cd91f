"""sd_notify: tell systemd that the daemon is ready, what it is doing, and that its loop is alive.

Without NOTIFY_SOCKET (not started by systemd, or Type= is not notify) every call does nothing.
No call ever raises: a lost status line must not take the speaker down.

    notifier = Notifier()
    watchdog = Watchdog(notifier)
    ...config, audio devices and wake word up...
    notifier.ready("idle: waiting for the wake word")
    while running:
        event = events.get(timeout=watchdog.period or 1.0)  # wake up even when nothing happens
        watchdog.kick()
        ...
    notifier.stopping("stopping")
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

try:  # systemd-python (the [systemd] extra); the datagram fallback below speaks the same protocol
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - depends on what is installed
    _sd_daemon = None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment: a status text must never be able to
    # say READY=1 or WATCHDOG=trigger on the daemon's behalf.
    return " ".join(str(text).split())


def _address(path: str) -> str | bytes:
    """NOTIFY_SOCKET as a socket address; '@name' is the abstract namespace."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


class Notifier:
    """Sends sd_notify messages to the socket systemd named in NOTIFY_SOCKET.

    backend: "auto" (systemd-python when importable, else a plain AF_UNIX datagram),
    "systemd" or "socket". The environment is read once, when the notifier is made.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, backend: str = "auto"):
        env = os.environ if environ is None else environ
        if backend not in ("auto", "systemd", "socket"):
            raise ValueError(f"backend must be auto, systemd or socket, not {backend!r}")
        self._path = env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        use_lib = backend == "systemd" or (backend == "auto" and _sd_daemon is not None)
        if use_lib and _sd_daemon is None:
            raise ValueError("backend 'systemd' needs systemd-python: pip install 'mira-agent[systemd]'")
        # libsystemd reads NOTIFY_SOCKET itself, so it is only usable when that is our socket too.
        self._use_lib = use_lib and os.environ.get("NOTIFY_SOCKET") == self._path
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when systemd is listening (NOTIFY_SOCKET is set)."""
        return self._path is not None

    def notify(self, *assignments: str) -> bool:
        """Send KEY=VALUE lines as one message; True if it was handed to the socket."""
        if self._path is None or not assignments:
            return False
        message = "\n".join(assignments)
        try:
            if self._use_lib:
                return bool(_sd_daemon.notify(message))
            return self._send(message.encode("utf-8", "replace"))
        except Exception as e:  # noqa: BLE001 - notification is best effort by design
            if not self._warned:  # once: a gone socket would otherwise log on every kick
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self._path, e)
            return False

    def _send(self, data: bytes) -> bool:
        with self._lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(data, _address(self._path))
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: config, audio devices and wake word are up (ends `systemctl start`)."""
        return self.notify("READY=1", *self._status(status))

    def status(self, text: str) -> bool:
        """STATUS=: one line a person reads in `systemctl status`."""
        return self.notify(*self._status(text))

    def watchdog(self) -> bool:
        """WATCHDOG=1: the loop is alive (prefer Watchdog.kick, which rate-limits this)."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: a clean shutdown has begun."""
        return self.notify("STOPPING=1", *self._status(status))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1: the config is being re-read; send ready() when done."""
        # MONOTONIC_USEC is required by Type=notify-reload (systemd >= 253), harmless before.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *self._status(status))

    def watchdog_interval(self) -> float | None:
        """WatchdogSec= in seconds, or None when no watchdog is asked of this process."""
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None  # the watchdog belongs to another process (we were forked or exec'd)
        return usec / 1e6

    def close(self) -> None:
        """Close the fallback socket; later calls reopen it."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "Notifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _status(text: str | None) -> tuple[str, ...]:
        return () if text is None else (f"STATUS={_one_line(text)}",)


class Watchdog:
    """Feeds systemd's watchdog only while the loop that calls kick() is running.

    kick() is cheap (a clock read and a compare) and sends WATCHDOG=1 at most every interval/2.
    Nothing else feeds it: when the loop stalls, the kicks stop and systemd restarts the service.
    """

    def __init__(self, notifier: Notifier, interval_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self._notifier = notifier
        self._interval = notifier.watchdog_interval() if interval_s is None else interval_s
        self._clock = clock
        self._last: float | None = None
        self.sent = 0
        """How many WATCHDOG=1 messages were sent."""

    @property
    def enabled(self) -> bool:
        """True when systemd expects keep-alives from this process."""
        return bool(self._interval) and self._notifier.enabled

    @property
    def period(self) -> float | None:
        """Longest time between kicks that still keeps the service alive with margin (interval/2).

        The loop should wake at least this often (e.g. as its queue timeout) even when idle.
        """
        return self._interval / 2 if self._interval else None

    def kick(self) -> bool:
        """Call from every loop iteration; True when a WATCHDOG=1 was sent now."""
        if not self._interval:
            return False
        now = self._clock()
        if self._last is not None and now - self._last < self._interval / 2:
            return False
        self._last = now
        sent = self._notifier.watchdog()
        self.sent += sent
        return sent

"""Is the Mira service reachable? Learned from what happens anyway, and checked without a session.

A failed connection says a lot for free: a DNS failure, a refused or timed-out connection, a
network that is unreachable, a 5xx on the upgrade mean the link is down. A refused key means
the opposite: the service answered. When a session fails for a reason that says neither (a
drop, a silent socket), one quick check decides. While down, a TCP connection to the service's
port (no WebSocket upgrade, so no session and nothing billed) is tried now and then, backing
off to check_interval_s, so the speaker knows the link is back before the user asks.
Nothing here runs while the link is up and the speaker is idle.
"""

from __future__ import annotations

import socket
import ssl
import time
from enum import Enum
from typing import Callable
from urllib.parse import urlsplit

import websocket

from agent.errors import ConnectionFailed
from agent.realtime.retry import Verdict, classify

FIRST_CHECK_S = 2.0  # after the link went down, the first check comes this soon, then backs off
PROBE_TIMEOUT_S = 3.0


class Link(str, Enum):
    """What the speaker knows of its link to the service."""

    UNKNOWN = "unknown"  # nothing tried yet, or a failure that needs a check
    UP = "up"            # the service answered (a session opened, or it refused the key)
    DOWN = "down"        # unreachable: no DNS, no route, nothing listening, no answer


def is_unreachable(failure: ConnectionFailed) -> bool | None:
    """True: the service cannot be reached; False: it answered; None: a check must tell."""
    if classify(failure) is Verdict.AUTH:
        return False  # a refused key is a person's problem, not the network's
    if failure.status is not None:
        return failure.status >= 500  # a gateway answered for a service that is down
    cause = failure.__cause__
    if isinstance(cause, ssl.SSLError):
        return True  # a captive portal or a proxy answering for the service
    if isinstance(cause, (OSError, websocket.WebSocketTimeoutException,
                          websocket.WebSocketAddressException)):
        return True  # refused, timed out, unreachable, DNS (websocket-client wraps the resolver's error)
    return None


def probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One TCP connection to the service's host and port, closed at once: None when it answers,
    else why not (a sentence). No TLS or WebSocket upgrade: no session, nothing billed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return f"cannot resolve {host} (DNS)"
    except ConnectionRefusedError:
        return f"nothing answers at {host}:{port}"
    except (TimeoutError, socket.timeout):
        return f"{host}:{port} did not answer within {timeout:g} s"
    except OSError as e:
        return f"cannot reach {host}:{port} ({e.strerror or type(e).__name__})"


class LinkHealth:
    """The link's state from connection outcomes and checks; no I/O and no clock inside.

    The owner calls failed() / succeeded() as sessions go, asks check_due(now) on its tick, runs
    probe() off its thread when it is, and reports with checked(). on_change(link, why) is
    called whenever the state changes.
    """

    def __init__(self, *, check_interval_s: float = 30.0,
                 on_change: Callable[[Link, str], None] | None = None):
        self.state = Link.UNKNOWN
        self.reason = ""
        self.interval_s = check_interval_s
        """The longest wait between checks while the link is down."""
        self._on_change = on_change
        self._next_check: float | None = None
        self._delay = FIRST_CHECK_S
        self._checking = False

    @property
    def down(self) -> bool:
        return self.state is Link.DOWN

    def failed(self, failure: ConnectionFailed, now: float) -> Link:
        """A connection or session failed: down, up, or a check soon when the failure cannot tell."""
        verdict = is_unreachable(failure)
        if verdict is True:
            self._set(Link.DOWN, str(failure), now)
        elif verdict is False:
            self._set(Link.UP, "the service answered", now)
        elif not self._checking and not self.down:
            self._next_check = now  # a quick check decides (while down, one is already planned)
        return self.state

    def succeeded(self, now: float) -> None:
        """A session opened: the link is up."""
        self._set(Link.UP, "a session opened", now)

    def check_due(self, now: float) -> bool:
        """Whether a probe should start now (at most one runs at a time)."""
        return not self._checking and self._next_check is not None and now >= self._next_check

    def checking(self) -> None:
        """A probe has started."""
        self._checking = True

    def checked(self, problem: str | None, now: float) -> None:
        """A probe's outcome: None when the service answered, else what went wrong."""
        self._checking = False
        if problem is None:
            self._set(Link.UP, "the service answers again" if self.down else "the service answers", now)
        else:
            self._set(Link.DOWN, problem, now, checked=True)

    def _set(self, state: Link, reason: str, now: float, checked: bool = False) -> None:
        if state is Link.DOWN:
            if self.state is not Link.DOWN:
                self._delay = FIRST_CHECK_S
                self._next_check = now + self._delay
            elif checked:  # only a failed check backs off: a failed reconnect must not postpone it
                self._delay = min(self.interval_s, self._delay * 2)
                self._next_check = now + self._delay
        else:
            self._next_check = None  # up: nothing runs until a session fails again
        changed = state is not self.state
        self.state, self.reason = state, reason
        if changed and self._on_change is not None:
            self._on_change(state, reason)

"""Reconnect policy, with no clock inside: what a failure means, how long to wait, what counts as up."""

from __future__ import annotations

import random
from enum import Enum

from agent.errors import ConnectionFailed

# Error codes (from `error` events) that mean the key or the session config is wrong: retrying
# soon cannot help, a person has to fix something.
_AUTH_ERROR_CODES = {"invalid_api_key", "authentication_error", "unauthorized", "forbidden",
                     "insufficient_quota", "account_deactivated", "invalid_session_config"}
_EXPIRED_CODES = {"session_expired"}


class Verdict(str, Enum):
    """What to do after a connection failed."""

    RETRY = "retry"        # a network fault: back off and try again
    AUTH = "auth"          # the key or config is refused: retry only at the slow cap, say what to fix


def classify(failure: ConnectionFailed) -> Verdict:
    """A failure's verdict: auth/config faults are never retried in a tight loop."""
    if failure.status in (401, 403) or failure.close_code == 1008:
        return Verdict.AUTH
    if failure.error_code in _AUTH_ERROR_CODES:
        return Verdict.AUTH
    return Verdict.RETRY


_KEY_HINT = "check the key in the mira-api-key credential, server.api_key_file or MIRA_API_KEY"
_HINTS = {"invalid_session_config": "check the [session] settings of the config file",
          "insufficient_quota": "check the quota and billing of the Mira account",
          "account_deactivated": "the Mira account is deactivated; check it, or use another key"}


def auth_hint(error_code: str) -> str:
    """What a person must fix after an auth or config error code, naming the setting."""
    return _HINTS.get(error_code, _KEY_HINT)


def is_refused(failure: ConnectionFailed) -> bool:
    """Nothing listens at the server's address (it is down or restarting): a refused SYN costs the
    server nothing, so polling for its return may be brisk."""
    return isinstance(failure.__cause__, ConnectionRefusedError)


def is_expiry(error_code: str) -> bool:
    return error_code in _EXPIRED_CODES


def is_auth_error(error_code: str) -> bool:
    return error_code in _AUTH_ERROR_CODES


class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [0, min(cap, base * 2**n)]."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None):
        self.base_s = base_s
        self.cap_s = cap_s
        self._rng = rng or random.Random()
        self.attempt = 0

    def next_delay(self, ceiling: float | None = None) -> float:
        """The next delay; `ceiling` caps this one lower (the attempt still counts toward later ones)."""
        top = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 30)))
        if ceiling is not None:
            top = min(top, ceiling)
        self.attempt += 1
        return self._rng.uniform(0, top)

    def reset(self) -> None:
        self.attempt = 0


class UptimeJudge:
    """Decides whether a session counted as up: one that dies within `stable_s` is a quick failure.

    Only a connection that stayed up long enough resets the backoff, so a server that accepts and
    drops at once, again and again, is backed off like a refused one.
    """

    def __init__(self, stable_s: float):
        self.stable_s = stable_s

    def was_stable(self, opened_at: float, ended_at: float) -> bool:
        return ended_at - opened_at >= self.stable_s

"""The reconnect policy, tested without a clock."""

import random

from agent.errors import ConnectionFailed
from agent.realtime.retry import Backoff, UptimeJudge, Verdict, classify


def test_auth_faults_are_not_retried_as_network_faults():
    """401/403 on the upgrade, close 1008 and key error codes are AUTH; the rest is RETRY."""
    assert classify(ConnectionFailed("x", status=401)) is Verdict.AUTH
    assert classify(ConnectionFailed("x", status=403)) is Verdict.AUTH
    assert classify(ConnectionFailed("x", close_code=1008)) is Verdict.AUTH
    assert classify(ConnectionFailed("x", error_code="invalid_api_key")) is Verdict.AUTH
    for f in (ConnectionFailed("refused"), ConnectionFailed("x", status=502),
              ConnectionFailed("x", close_code=1001), ConnectionFailed("x", close_code=1011),
              ConnectionFailed("x", error_code="session_expired")):
        assert classify(f) is Verdict.RETRY


def test_backoff_grows_with_full_jitter_under_the_cap():
    """Delay n lies in [0, min(cap, base * 2**n)]; reset starts again from base."""
    b = Backoff(0.5, 8.0, random.Random(1))
    ceilings = [0.5, 1, 2, 4, 8, 8, 8]
    delays = [b.next_delay() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings))
    assert max(delays[3:]) > 1.0  # it really grows
    b.reset()
    assert all(b.next_delay() <= 0.5 for _ in range(1)) and b.attempt == 1


def test_backoff_jitter_spreads_delays():
    """Full jitter: many devices failing at once do not retry in lockstep."""
    b = Backoff(1.0, 1.0, random.Random(7))
    delays = {round(b.next_delay(), 3) for _ in range(50)}
    assert len(delays) > 40


def test_quick_failures_are_not_successes():
    """A session that dies within stable_s does not count as up."""
    judge = UptimeJudge(10.0)
    assert not judge.was_stable(100.0, 103.0)
    assert judge.was_stable(100.0, 111.0)

"""Faults that must not become retry loops: a refused key (close 1008), a server that drops at once."""

import logging
import random
import time

import numpy as np
import pytest

from agent.audio.base import SAMPLE_RATE
from agent.devserver import DevServer
from agent.realtime.retry import Backoff
from agent.state import State
from fault_proxy import FaultProxy, Watch, dithered, retune
from harness import KEY, Run

pytestmark = pytest.mark.slow


def silence(seconds: float, seed: int = 3) -> np.ndarray:
    return dithered(np.zeros(int(seconds * SAMPLE_RATE), np.int16), seed)


def test_key_rejected_after_accept_is_one_attempt_per_auth_interval(tmp_path, caplog):
    """Close 1008 after the upgrade: ERROR, one log line naming the key's settings, triggers inside
    auth_retry_s are refused locally, one new attempt after it."""
    caplog.set_level(logging.INFO)
    with DevServer(api_key=KEY) as server:
        server.faults.reject_key_after_accept = True
        run = Run(tmp_path, server, silence(8.0), reconnect={"auth_retry_s": 2.0})
        watch = Watch(run)
        with run:
            failed = watch.wait(State.ERROR)
            for _ in range(15):  # a user pressing again and again
                run.conversation.trigger("button")
                time.sleep(0.1)
            assert len(server.recorder.handshakes) == 1
            time.sleep(max(0.0, failed.at + 2.05 - time.monotonic()))
            for _ in range(5):
                run.conversation.trigger("button")
                time.sleep(0.1)
            again = watch.wait(State.ERROR, after=failed.at + 0.01)
            assert again.at - failed.at >= 2.0
            time.sleep(0.5)
            assert len(server.recorder.handshakes) == 2
            assert run.states[-1] is State.ERROR
            run.conversation.stop()
    named = [r for r in caplog.records if r.levelno >= logging.ERROR and "server.api_key_file" in r.getMessage()]
    assert len(named) == 2  # one per attempt, each naming where the key comes from
    assert "1008" in named[0].getMessage() and "MIRA_API_KEY" in named[0].getMessage()
    assert KEY not in caplog.text


def test_reload_after_a_refused_key_retries_at_once(tmp_path):
    """After the key is fixed and the config reloaded (SIGHUP), the next trigger connects at once,
    without waiting for auth_retry_s, as the log line promises."""
    with DevServer(api_key=KEY) as server:
        server.faults.reject_key_after_accept = True
        run = Run(tmp_path, server, silence(8.0), reconnect={"auth_retry_s": 300.0})
        watch = Watch(run)
        with run:
            failed = watch.wait(State.ERROR)
            server.faults.reject_key_after_accept = False
            run.conversation.post("reload", run.config)   # what the daemon's SIGHUP handler posts
            time.sleep(0.1)
            run.conversation.trigger("button")
            watch.wait(State.LISTENING, after=failed.at, timeout=3)
            run.conversation.stop()
    assert len(server.recorder.handshakes) == 2


@pytest.mark.parametrize("how", ["session then drop", "accept then reset"])
def test_quick_failures_are_backed_off_not_hammered(tmp_path, how):
    """A server that accepts and drops at once, again and again, in a conversation: attempts grow
    apart (backoff never resets), a handful in 6 s instead of hundreds; the microphone stream is
    kept meanwhile. (Before a first session opens, a reset is the service being unreachable: that
    turn is answered on the device, tests/test_offline_daemon.py.)"""
    with DevServer(api_key=KEY) as server, FaultProxy(server.port) as proxy:
        if how == "session then drop":
            server.faults.max_session_s = 0.02
        run = Run(tmp_path, proxy, silence(9.0), reconnect={"base_s": 0.5, "stable_s": 5.0, "buffer_s": 60.0})
        retune(run, server={"url": proxy.url})
        run.conversation.backoff = Backoff(0.5, 30.0, random.Random(11))
        watch = Watch(run)
        with run:
            watch.wait(State.LISTENING)
            if how == "accept then reset":
                proxy.cut()
                proxy.drop_on_accept = True
            start = time.monotonic()
            time.sleep(6.0)
            attempts = [t for t in proxy.accept_times if t >= start - 0.05]
            assert State.ERROR not in run.states
            run.conversation.stop()
    assert 2 <= len(attempts) <= 8, attempts
    gaps = np.diff(attempts)
    assert gaps.max() > 1.0  # it really backs off
    assert run.conversation.backoff.attempt >= len(attempts) - 1


def test_key_error_event_mid_session_is_an_auth_fault_not_a_retry_loop(tmp_path, caplog):
    """An `error` event invalid_api_key mid-session: the session ends in ERROR with the key's settings
    named, and no reconnect is attempted."""
    caplog.set_level(logging.INFO)
    with DevServer(api_key=KEY) as server:
        run = Run(tmp_path, server, silence(6.0), reconnect={"auth_retry_s": 60.0})
        watch = Watch(run)
        with run:
            ready = watch.wait(State.LISTENING)
            server.send_raw('{"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", '
                            '"code": "invalid_api_key", "message": "Incorrect API key provided."}}')
            watch.wait(State.ERROR, after=ready.at)
            time.sleep(1.5)
            run.conversation.stop()
    assert len(server.recorder.handshakes) == 1
    assert State.RECONNECTING not in run.states
    (line,) = [r.getMessage() for r in caplog.records if "invalid_api_key" in r.getMessage()]
    assert "server.api_key_file" in line and "MIRA_API_KEY" in line  # names where the key is set

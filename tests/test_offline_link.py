"""Knowing whether the service is reachable: the tracker (pure) and the probe (real loopback sockets)."""

import socket
import ssl

import pytest
import websocket

from agent.errors import ConnectionFailed
from agent.offline.link import FIRST_CHECK_S, Link, LinkHealth, is_unreachable, probe


def failure(cause: BaseException | None = None, **kw) -> ConnectionFailed:
    f = ConnectionFailed("connection failed", **kw)
    f.__cause__ = cause
    return f


@pytest.mark.parametrize("cause", [socket.gaierror(-3, "Temporary failure in name resolution"),
                                   websocket.WebSocketAddressException(socket.gaierror(-2, "no name")),
                                   ConnectionRefusedError(111, "refused"), TimeoutError(),
                                   OSError(101, "Network is unreachable"),
                                   websocket.WebSocketTimeoutException("timed out"),
                                   ssl.SSLCertVerificationError("captive portal")])
def test_network_faults_mean_unreachable(cause):
    """DNS failure, refused, timed out, no route, a stranger's certificate: the link is down."""
    assert is_unreachable(failure(cause)) is True


@pytest.mark.parametrize("kw", [{"status": 401}, {"status": 403}, {"close_code": 1008},
                                {"error_code": "invalid_api_key"}])
def test_a_refused_key_is_not_offline(kw):
    """The service answered: a key problem is never taken for a network problem."""
    assert is_unreachable(failure(**kw)) is False


def test_a_gateway_error_is_down_and_a_drop_needs_a_check():
    assert is_unreachable(failure(status=502)) is True
    assert is_unreachable(failure(status=404)) is False
    assert is_unreachable(failure(close_code=1006)) is None


def test_down_then_checks_back_off_to_the_interval_and_stop_when_up():
    """Down: first check soon, then doubling up to check_interval_s; up: no more checks."""
    changes = []
    h = LinkHealth(check_interval_s=10, on_change=lambda s, why: changes.append(s))
    assert h.failed(failure(ConnectionRefusedError()), now=0) is Link.DOWN and h.down
    assert not h.check_due(FIRST_CHECK_S - 0.01) and h.check_due(FIRST_CHECK_S)
    due, waits = FIRST_CHECK_S, []
    for _ in range(4):
        h.checking()
        assert not h.check_due(due + 100)  # one probe at a time
        h.checked("nothing answers", due)
        nxt = next(t / 10 for t in range(int(due * 10), int(due * 10) + 1000) if h.check_due(t / 10))
        waits.append(round(nxt - due, 1))
        due = nxt
    assert waits == [4.0, 8.0, 10.0, 10.0]
    h.checking()
    h.checked(None, due)
    assert h.state is Link.UP and not h.check_due(due + 10_000)
    assert changes == [Link.DOWN, Link.UP]


def test_a_drop_asks_for_one_quick_check_and_a_key_refusal_is_up():
    h = LinkHealth()
    assert h.failed(failure(close_code=1006), now=5) is Link.UNKNOWN and h.check_due(5)
    h.checking()
    h.checked("cannot resolve api.vmira.ai (DNS)", 5.5)
    assert h.down and h.reason == "cannot resolve api.vmira.ai (DNS)"
    assert h.failed(failure(status=401), now=6) is Link.UP and not h.check_due(1000)


def test_a_session_that_opens_means_up():
    h = LinkHealth()
    h.failed(failure(socket.gaierror(-2, "Name or service not known")), now=0)
    h.succeeded(now=1)
    assert h.state is Link.UP and not h.check_due(100)


def test_probe_answers_for_a_listening_port_and_names_a_closed_one():
    """A TCP connection only (no upgrade): a listener answers; a closed port is named."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert probe(f"ws://127.0.0.1:{port}/v1/realtime", timeout=2) is None
    assert probe(f"ws://127.0.0.1:{port}/v1/realtime", timeout=2) == f"nothing answers at 127.0.0.1:{port}"


def test_failures_while_down_do_not_postpone_the_next_check():
    """A conversation's reconnects failing again and again while down: the first check still comes
    FIRST_CHECK_S after the link went down (only failed checks back off)."""
    h = LinkHealth(check_interval_s=30)
    h.failed(failure(ConnectionRefusedError()), now=0)
    for t in (0.3, 0.9, 1.5, 1.9):
        h.failed(failure(ConnectionRefusedError()), now=t)
    h.failed(failure(), now=1.95)  # a failure that cannot tell: while down, no extra check
    assert h.down and h.check_due(FIRST_CHECK_S) and not h.check_due(FIRST_CHECK_S - 0.01)

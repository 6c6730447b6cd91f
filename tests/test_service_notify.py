"""sd_notify over a real datagram NOTIFY_SOCKET bound by the test, through systemd-python and the fallback."""

import os
import socket
import uuid

import pytest

from agent.service.notify import Notifier, Watchdog

BACKENDS = ["systemd", "socket"]


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """A bound AF_UNIX datagram socket named in NOTIFY_SOCKET, like systemd's."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def nothing_pending(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        sock.recv(4096)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(2.0)
    return False


@pytest.mark.parametrize("backend", BACKENDS)
def test_ready_carries_status_in_one_message(notify_socket, backend):
    """ready() sends READY=1 and the STATUS line together."""
    n = Notifier(backend=backend)
    assert n.ready("idle, waiting for the wake word") is True
    assert receive(notify_socket) == ["READY=1", "STATUS=idle, waiting for the wake word"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_status_watchdog_stopping_reloading_are_sent(notify_socket, backend):
    """status, watchdog, stopping and reloading each send their assignment."""
    n = Notifier(backend=backend)
    n.status("listening")
    assert receive(notify_socket) == ["STATUS=listening"]
    n.watchdog()
    assert receive(notify_socket) == ["WATCHDOG=1"]
    n.stopping("stopping on SIGTERM")
    assert receive(notify_socket) == ["STOPPING=1", "STATUS=stopping on SIGTERM"]
    n.reloading()
    lines = receive(notify_socket)
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_newline_in_status_cannot_inject_an_assignment(notify_socket, backend):
    """A status text with newlines stays one STATUS line, so it cannot say READY=1."""
    Notifier(backend=backend).status("bad\nREADY=1")
    assert receive(notify_socket) == ["STATUS=bad READY=1"]


def test_abstract_namespace_socket_is_reached_by_the_fallback(monkeypatch):
    """NOTIFY_SOCKET=@name addresses the abstract namespace."""
    name = f"mira-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2.0)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with Notifier(backend="socket") as n:
            assert n.ready() is True
        assert receive(sock) == ["READY=1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_notify_socket_nothing_is_sent(monkeypatch, backend):
    """With no NOTIFY_SOCKET every call returns False and does nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier(backend=backend)
    assert not n.enabled
    assert [n.ready("x"), n.status("x"), n.watchdog(), n.stopping(), n.reloading()] == [False] * 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_vanished_socket_never_raises(tmp_path, monkeypatch, backend):
    """A NOTIFY_SOCKET that points nowhere makes calls return False, not raise."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    n = Notifier(backend=backend)
    assert n.ready("x") is False
    assert n.watchdog() is False


def test_watchdog_interval_comes_from_watchdog_usec():
    """WATCHDOG_USEC gives the interval in seconds; a foreign WATCHDOG_PID or none gives None."""
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog_interval() == 20.0
    assert Notifier({"WATCHDOG_USEC": "20000000",
                     "WATCHDOG_PID": str(os.getpid())}).watchdog_interval() == 20.0
    assert Notifier({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert Notifier({}).watchdog_interval() is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval() is None


class FakeClock:
    """A clock the test advances, so watchdog timing is exact."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("backend", BACKENDS)
def test_kicks_are_rate_limited_to_half_the_interval(notify_socket, backend):
    """Kicks send WATCHDOG=1 at most every interval/2, however often the loop runs."""
    clock = FakeClock()
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "10000000"},
                            backend=backend), clock=clock)
    assert dog.enabled and dog.period == 5.0
    sent = []
    for i in range(100):  # 10 s of a loop turning every 0.1 s
        clock.now = 1000.0 + i * 0.1
        sent.append(dog.kick())
    assert sum(sent) == 2 and sent[0] and sent[50]
    assert receive(notify_socket) == ["WATCHDOG=1"]
    assert receive(notify_socket) == ["WATCHDOG=1"]
    assert nothing_pending(notify_socket)


def test_a_stalled_loop_stops_feeding_the_watchdog(notify_socket):
    """When the loop stops kicking, no WATCHDOG=1 follows: nothing feeds it behind the loop's back."""
    clock = FakeClock()
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"]}, backend="socket"),
                   interval_s=2.0, clock=clock)
    for i in range(30):  # a healthy loop for 3 s
        clock.now = 1000.0 + i * 0.1
        dog.kick()
    fed = dog.sent
    assert fed == 3
    for _ in range(fed):
        assert receive(notify_socket) == ["WATCHDOG=1"]
    clock.now += 60.0  # the loop hangs for a minute: it never calls kick()
    assert dog.sent == fed
    assert nothing_pending(notify_socket)
    assert dog.kick() is True  # when it recovers, the next kick feeds again at once


def test_watchdog_without_interval_is_a_cheap_no_op(notify_socket):
    """No WatchdogSec: kick() sends nothing."""
    dog = Watchdog(Notifier({"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"]}))
    assert not dog.enabled and dog.period is None
    assert dog.kick() is False
    assert nothing_pending(notify_socket)


def test_unknown_backend_is_refused():
    """A misspelt backend is a ValueError naming it."""
    with pytest.raises(ValueError, match="sd"):
        Notifier(backend="sd")

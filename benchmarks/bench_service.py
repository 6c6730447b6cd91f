"""Service figures: the unit's systemd exposure rating, and what feeding the watchdog costs the loop."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import Row, median

from agent.service.notify import Notifier, Watchdog

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "mira-agent.service"


def exposure() -> Row:
    name = "systemd-analyze security exposure (mira-agent.service)"
    if shutil.which("systemd-analyze") is None:
        return Row(name, "no systemd-analyze", "<= 3.0", None)
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
                         capture_output=True, text=True, timeout=60).stdout
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    if not match:
        return Row(name, "not reported", "<= 3.0", False)
    value = float(match.group(1))
    return Row(name, f"{value:.1f}", "<= 3.0", value <= 3.0)


def kick_cost() -> Row:
    """Per-iteration cost of Watchdog.kick() on a loop that turns far faster than the interval."""
    dog = Watchdog(Notifier({}), interval_s=20.0)
    n = 100_000
    runs = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            dog.kick()
        runs.append((time.perf_counter_ns() - t0) / n)
    ns = median(runs)
    return Row("Watchdog.kick() per loop turn (median of 5 x 100k)", f"{ns:.0f} ns", "<= 2000 ns", ns <= 2000)


def notify_latency() -> Row:
    """One STATUS= datagram from Notifier to a bound socket and back out of recv()."""
    with tempfile.TemporaryDirectory() as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        path = os.path.join(d, "notify")
        s.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path}, backend="socket")
        times = []
        for i in range(2000):
            t0 = time.perf_counter_ns()
            notifier.status(f"listening {i}")
            s.recv(512)
            times.append(time.perf_counter_ns() - t0)
        notifier.close()
    us = median(times) / 1000
    return Row("sd_notify STATUS= delivered (fallback socket, median)", f"{us:.1f} us", "-", None)


def rows() -> list[Row]:
    return [exposure(), kick_cost(), notify_latency()]

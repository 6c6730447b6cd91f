"""Service figures: start to READY=1, a late sound device to IDLE, `mira-agent check`'s wall time,
the unit's exposure rating, what feeding the watchdog costs."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import wave
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


READY_RUNS = 5
READY_TIMEOUT_S = 15.0


def _daemon_config(folder: Path, port: int) -> Path:
    """A daemon that needs no hardware: WAV files for audio, the real wake model, a loopback URL."""
    with wave.open(str(folder / "silence.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(bytes(2 * 24000 * 60))
    path = folder / "agent.toml"
    path.write_text(f'[server]\nurl = "ws://127.0.0.1:{port}/v1/realtime"\n'
                    '[audio]\nbackend = "file"\ninput_file = "silence.wav"\noutput_file = "out.wav"\n'
                    '[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n')
    return path


def _drain(sock: socket.socket) -> None:
    """Drop what an earlier run sent after its READY=1 (STATUS=, STOPPING=1)."""
    sock.settimeout(0)
    try:
        while True:
            sock.recv(4096)
    except (BlockingIOError, TimeoutError):
        pass


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM, as systemd stops it; killed if it has not gone in 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _time_to_ready(config: Path, sock: socket.socket, path: str) -> float | str:
    """Seconds from spawning `mira-agent run` to its READY=1, or why there was none."""
    _drain(sock)
    env = {**os.environ, "NOTIFY_SOCKET": path, "MIRA_API_KEY": "bench-key-not-used"}
    env.pop("WATCHDOG_USEC", None)
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                                env=env, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=Path(__file__).resolve().parent.parent)
        ready: float | str = f"no READY=1 in {READY_TIMEOUT_S:g} s"
        try:
            deadline = t0 + READY_TIMEOUT_S
            while time.perf_counter() < deadline and proc.poll() is None:
                sock.settimeout(max(0.01, min(0.5, deadline - time.perf_counter())))
                try:
                    message = sock.recv(4096).decode()
                except TimeoutError:
                    continue
                if "READY=1" in message.split("\n"):
                    ready = time.perf_counter() - t0
                    break
        finally:
            _terminate(proc)
        if isinstance(ready, str) and proc.returncode not in (None, 0, -signal.SIGTERM):
            err.seek(0)
            last = (err.read().strip().splitlines() or [""])[-1]
            ready = f"exited {proc.returncode} before READY=1: {last[-80:]}"
    return ready


def start_to_ready() -> Row:
    """`mira-agent run` to READY=1 (config, audio, wake model up), median of READY_RUNS starts."""
    name = f"start to READY=1 (file audio, openwakeword, median of {READY_RUNS})"
    with tempfile.TemporaryDirectory() as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s, \
            socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # never contacted before a wake word; there so the URL is real
        config = _daemon_config(Path(d), server.getsockname()[1])
        path = os.path.join(d, "notify")
        s.bind(path)
        times = []
        for _ in range(READY_RUNS):
            t = _time_to_ready(config, s, path)
            if isinstance(t, str):
                return Row(name, t, "<= 3 s", False)
            times.append(t)
    value = median(times)
    return Row(name, f"{value:.2f} s", "<= 3 s", value <= 3.0)


ROOT = Path(__file__).resolve().parent.parent
APPEAR_RUNS = 3
APPEAR_AFTER_S = 2.0  # the sound server starts this long after READY=1 (the daemon is polling by then)


def _statuses(sock: socket.socket, deadline: float):
    """(arrival, STATUS= text) of each notify message until the deadline."""
    while time.perf_counter() < deadline:
        sock.settimeout(max(0.01, min(0.5, deadline - time.perf_counter())))
        try:
            lines = sock.recv(4096).decode().split("\n")
        except TimeoutError:
            continue
        for line in lines:
            if line.startswith("STATUS="):
                yield time.perf_counter(), line.removeprefix("STATUS=")


def _device_appears_once(folder: Path) -> float | str:
    """Seconds from the sound server accepting clients to STATUS=idle, for a daemon that started
    without it (ERROR: no speaker, no microphone), or why there is no figure."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixtures_audio import PulseServer

    server = PulseServer(folder)
    (folder / "agent.toml").write_text('[server]\nurl = "ws://127.0.0.1:9/v1/realtime"\n[echo]\nenabled = false\n'
                                       '[wake]\nengine = "openwakeword"\nmodel = "hey_jarvis"\n')
    path = str(folder / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, tempfile.TemporaryFile("w+") as err:
        sock.bind(path)
        env = {**os.environ, **server.env, "NOTIFY_SOCKET": path, "MIRA_API_KEY": "bench-key-not-used"}
        env.pop("WATCHDOG_USEC", None)
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(folder / "agent.toml")],
                                env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        try:
            statuses = _statuses(sock, time.perf_counter() + 30)
            first = next((s for _, s in statuses), "")
            if not first.startswith("error: "):
                return f"started {first or 'silent'}, not error"
            time.sleep(APPEAR_AFTER_S)
            server.start()
            t0 = time.perf_counter()
            for at, status in _statuses(sock, t0 + 30):
                if status.startswith("idle: "):
                    return at - t0
            return "no idle within 30 s"
        finally:
            _terminate(proc)
            server.stop()


def device_appears_to_idle() -> Row:
    """A daemon started before its sound server (a USB card late at boot): server up -> IDLE."""
    name = f"sound device appears -> IDLE (PulseAudio started after the daemon, median of {APPEAR_RUNS})"
    if not all(shutil.which(c) for c in ("pulseaudio", "pactl")):
        return Row(name, "no pulseaudio", "<= 5 s", None)
    times = []
    for _ in range(APPEAR_RUNS):
        with tempfile.TemporaryDirectory() as d:
            t = _device_appears_once(Path(d))
        if isinstance(t, str):
            return Row(name, t[:22], "<= 5 s", False)
        times.append(t)
    value = median(times)
    return Row(name, f"{value:.2f} s", "<= 5 s", 0 < value <= 5.0)


CHECK_RUNS = 3


def check_wall_time() -> Row:
    """`mira-agent check` as a person runs it, against the project's server: process start to exit,
    every row (config, key, WAV audio, wake model, GPIO, trigger, a real session)."""
    from agent.devserver import DevServer

    name = f"mira-agent check, reachable server, wall time (median of {CHECK_RUNS})"
    key = "bench-check-key-0123"
    times = []
    with tempfile.TemporaryDirectory() as d, DevServer(api_key=key) as server:
        folder = Path(d)
        config = _daemon_config(folder, 9)
        config.write_text(config.read_text().replace("ws://127.0.0.1:9/v1/realtime", server.url))
        env = {**os.environ, "MIRA_API_KEY": key}
        env.pop("CREDENTIALS_DIRECTORY", None)
        for _ in range(CHECK_RUNS):
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "agent.cli", "check", "--config", str(config)],
                                  env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
            took = time.perf_counter() - t0
            if done.returncode != 0 or "a session opened and closed" not in done.stdout:
                last = (done.stdout.strip().splitlines() or [""])[-1]
                return Row(name, f"exit {done.returncode}: {last[:12]}", "<= 5 s", False)
            times.append(took)
    value = median(times)
    return Row(name, f"{value:.2f} s", "<= 5 s", 0 < value <= 5.0)


def rows() -> list[Row]:
    return [start_to_ready(), device_appears_to_idle(), check_wall_time(), exposure(), kick_cost(),
            notify_latency()]

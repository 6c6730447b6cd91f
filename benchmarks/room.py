"""A room for the whole daemon: the real `mira-agent run` process on the PulseAudio null-sink
echo path (it plays into the sink, its microphone is the sink's monitor), sounds played into
the same sink as a room or a user would make them, and what the process costs from /proc.

Used by bench_idle (CPU while waiting for the wake word) and the room soak (benchmarks/soak.py).
Only loopback and a private PulseAudio server; every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from fixtures_audio import PulseServer, pulseaudio_available  # noqa: E402
from test_daemon_service import NotifySocket  # noqa: E402

KEY = "sk-mira-room"
RATE = 24000
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SYSTEMD_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM",
               "CREDENTIALS_DIRECTORY")


def pink(seconds: float, level_db: float, seed: int = 0) -> np.ndarray:
    """Pink noise (1/f power) at level_db dBFS RMS, 24 kHz int16: a quiet room's hiss."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    x = np.fft.irfft(spectrum, n)
    x *= 10 ** (level_db / 20) * 32768 / np.sqrt(np.mean(x * x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def at_level(pcm: np.ndarray, level_db: float) -> np.ndarray:
    """pcm scaled so that its sounding part (|x| > 1 % of the peak) is level_db dBFS RMS."""
    x = pcm.astype(np.float64)
    loud = x[np.abs(x) > 0.01 * np.abs(x).max()]
    gain = 10 ** (level_db / 20) * 32768 / np.sqrt(np.mean(loud * loud))
    return np.clip(np.rint(x * gain), -32768, 32767).astype(np.int16)


TV_LINES = [
    ("And now the weather for the weekend: rain in the north, sunshine further south.", "en-us"),
    ("The committee will meet again on Thursday to discuss the new budget.", "en-gb"),
    ("Stay with us, after the break we talk to the team that won the final.", "en-us+f3"),
    ("Prices rose by two percent last month, the highest figure this year.", "en-gb+m3"),
    ("Scientists say the comet will be visible from tonight until the end of May.", "en-us+m2"),
    ("Tickets for the concert sold out in less than an hour.", "en-gb+f2"),
]


def tv_speech(seconds: float, level_db: float = -30.0) -> np.ndarray:
    """Talk-show speech in the room (several espeak voices, no wake word), level_db dBFS
    while sounding, with short pauses, repeated to `seconds`."""
    from agent.demo import speak

    gap = np.zeros(int(0.4 * RATE), np.int16)
    parts = []
    for text, voice in TV_LINES:
        parts += [at_level(speak(text, voice), level_db), gap]
    one = np.concatenate(parts)
    n = int(seconds * RATE)
    return np.resize(one, n)


class Room:
    """A private PulseAudio server with the null sink `spk` (24 kHz mono); `play` puts sound
    into the sink (a paced `pacat` client), as a room, a television or a user would."""

    def __init__(self, folder: Path):
        if not pulseaudio_available():
            raise RuntimeError("pulseaudio, pulseaudio-utils and libasound2-plugins are needed")
        self.folder = Path(folder)
        self.server = PulseServer(self.folder)
        self._players: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def __enter__(self) -> "Room":
        self.server.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_playing()
        self.server.stop()

    def play(self, pcm: np.ndarray, name: str = "room") -> subprocess.Popen:
        """Start playing pcm (24 kHz int16) into the sink; returns the player (it exits when
        done)."""
        raw = self.folder / f"{name}-{len(self._players)}.raw"
        pcm.astype("<i2").tofile(raw)
        with open(raw, "rb") as source:
            player = subprocess.Popen(
                ["pacat", "--playback", "--raw", "--format=s16le", f"--rate={RATE}",
                 "--channels=1", "--device=spk", "--latency-msec=20",
                 f"--client-name={name}"],
                stdin=source, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        self._players.append(player)
        return player

    def stop_playing(self) -> None:
        for player in self._players:
            if player.poll() is None:
                player.kill()
            player.wait(5)
        self._players.clear()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads) so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


class DaemonProcess:
    """`mira-agent run --config F` (the installed console script) in the room's sound server,
    with systemd's notify socket; stderr (the log) goes to a file."""

    def __init__(self, folder: Path, config: Path, room: Room, *args: str):
        self.folder = Path(folder)
        self.notify = NotifySocket(self.folder)
        self.log_path = self.folder / "daemon.log"
        self._log = open(self.log_path, "w")
        script = Path(sys.executable).with_name("mira-agent")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli"]
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}
        self.proc = subprocess.Popen(
            [*command, "run", "--config", str(config), *args], cwd=self.folder,
            env={**env, **room.env, "MIRA_API_KEY": KEY, "NOTIFY_SOCKET": self.notify.path},
            stdout=subprocess.DEVNULL, stderr=self._log)

    def ready(self, timeout: float = 60.0) -> bool:
        """READY=1 sent (the devices are open and the loop runs)."""
        try:
            self.notify.wait("READY=1", timeout=timeout)
        except AssertionError:  # (how the tests' socket says it never came)
            return False
        return self.proc.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all its threads) so far."""
        return cpu_seconds(self.proc.pid)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not stopped within timeout; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        self.notify.close()
        return self.proc.returncode


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def config_text(url: str, **sections: dict) -> str:
    """The default config but for the server's address and the given [section] keys."""
    sections = {"server": {"url": url}, **sections}
    return "".join(f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())
                   for name, keys in sections.items())

"""Virtual sound cards for real PortAudio tests: ALSA's file plugin, and a PulseAudio null sink.

ALSA reads its configuration once per process, so code that opens PyAudio runs in a child
process whose environment (`env`) points ALSA_CONFIG_PATH at the card. `run_scenario` runs a
function of tests/audio_scenarios.py there and returns what it printed as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def alsa_file_card(folder: Path, capture: Path, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """An ALSA config whose default device captures from `capture` (raw) and plays into
    folder/playback.raw (plus silent devices named `extra`); returns the environment that
    selects it."""
    conf = folder / "asound.conf"
    conf.write_text("".join(f'pcm.{name} {{ type plug slave.pcm "null" }}\n' for name in extra) +
        'pcm.!default { type asym capture.pcm "mic" playback.pcm "spk" }\n'
        f'pcm.mic {{ type plug slave.pcm {{ type file slave.pcm "null" file "/dev/null" '
        f'infile "{capture}" format "raw" }} }}\n'
        f'pcm.spk {{ type plug slave.pcm {{ type file slave.pcm "null" '
        f'file "{folder / "playback.raw"}" format "raw" }} }}\n'
        'pcm.null { type null }\n')
    return {"ALSA_CONFIG_PATH": str(conf), "JACK_NO_START_SERVER": "1"}


def pulseaudio_available() -> bool:
    """pulseaudio, pactl and ALSA's pulse plugin (libasound2-plugins) are installed."""
    plugin = any(Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so"))
    return plugin and all(shutil.which(c) for c in ("pulseaudio", "pactl"))


class PulseServer:
    """A private PulseAudio server with a null sink `spk` (24 kHz mono s16le), its monitor as
    the default source, in its own runtime directory; started and stopped by pid."""

    def __init__(self, folder: Path, rate: int = 24000):
        self.folder = Path(folder)
        self.rate = rate
        self.pid: int | None = None
        self.extra: list[str] = []
        (self.folder / "asound.conf").write_text("pcm.!default { type pulse }\n"
                                                 "ctl.!default { type pulse }\n")
        self.env = {
            "XDG_RUNTIME_DIR": str(self.folder), "PULSE_RUNTIME_PATH": str(self.folder),
            "HOME": str(self.folder), "ALSA_CONFIG_PATH": str(self.folder / "asound.conf"),
            "PULSE_SOURCE": "spk.monitor", "PULSE_SINK": "spk", "JACK_NO_START_SERVER": "1",
        }

    def start(self) -> "PulseServer":
        env = {**os.environ, **self.env}
        cmd = ["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "-n", "--use-pid-file=yes",
               "--load=module-native-protocol-unix",
               f"--load=module-null-sink sink_name=spk rate={self.rate} channels=1 "
               "format=s16le", "--load=module-always-sink",
               f"--log-target=file:{self.folder / 'pulse.log'}", *self.extra]
        if os.geteuid() == 0:
            cmd.insert(1, "--system=no")
        subprocess.run(cmd, env=env, check=True, timeout=20, capture_output=True)
        pidfile = self.folder / "pid"
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.05)
        self.pid = int(pidfile.read_text().split()[0])
        return self

    def stop(self) -> None:
        """Kill the server (as a device loss looks to its clients) and wait for it to go."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
        (self.folder / "pid").unlink(missing_ok=True)
        (self.folder / "native").unlink(missing_ok=True)

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env={**os.environ, **self.env}, check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def __enter__(self) -> "PulseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_scenario(name: str, env: dict[str, str], *args, timeout: float = 60) -> dict:
    """Run audio_scenarios.<name>(*args) in a child with env; its last stdout line as JSON."""
    code = (f"import sys, json; sys.path[:0] = [{str(TESTS)!r}, {str(ROOT)!r}]; "
            f"import audio_scenarios as s; print(json.dumps(s.{name}(*{list(args)!r})))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise AssertionError(f"scenario {name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])

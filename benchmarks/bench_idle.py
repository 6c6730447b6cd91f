"""The whole daemon waiting for its wake word (issue 15): CPU seconds per audio second of the
real `mira-agent run` process (utime + stime of all its threads, from /proc), on the PulseAudio
null-sink path the tests use, with the default config (but the server's address): a quiet room
(pink noise at -60 dBFS), speech in the room (a television: several voices, no wake word) and
digital silence, echo cancelling on and off; the audio I/O and the loop alone (no echo
canceller, no wake word); and, in the same run, the wake model alone on the same audio and the
path's own floor: a bare PortAudio input stream (no daemon) opened as the microphone is, whose
callback only returns. On this rig the floor is mostly libpulse's client thread, which wakes for
every few ms the null sink's monitor hands over, whatever period is asked for; a Pi's ALSA `hw:`
card has no such thread, so the daemon's own share is the difference.

Each case is a fresh daemon, measured over BENCH_IDLE_S seconds of audio (default 15) once it
is ready and its speaker's stream has come to rest (what waiting is); the cases take turns BENCH_IDLE_REPEATS times (default 3) and the rows quote medians.
A figure that cannot be (no CPU at all, more than the machine's cores, a daemon that died, a
room that fell silent early) fails its row whatever the target.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agent.audio.playback import REST_AFTER_S
from benchmarks.common import Row, median
from benchmarks.room import RATE, DaemonProcess, Room, config_text, cpu_seconds, pink, tv_speech

SECONDS = float(os.environ.get("BENCH_IDLE_S", "15"))
REPEATS = int(os.environ.get("BENCH_IDLE_REPEATS", "3"))
# after READY: the streams' start-up, then the speaker's stream comes to rest (idle: waiting)
SETTLE_S = 3.0 + REST_AFTER_S
CORES = os.cpu_count() or 1

QUIET, SPEECH, SILENCE = "quiet room", "speech in the room", "digital silence"
TARGETS = {QUIET: 0.008, SPEECH: 0.025, SILENCE: 0.008}
# (room, label, config sections): the default config with echo on, then the variations
CASES = [
    (QUIET, "echo on (defaults)", {}),
    (QUIET, "echo off", {"echo": {"enabled": False}}),
    (SPEECH, "echo on (defaults)", {}),
    (SPEECH, "echo off", {"echo": {"enabled": False}}),
    (SILENCE, "echo on (defaults)", {}),
    (QUIET, "audio I/O and loop alone (no echo, no wake)",
     {"echo": {"enabled": False}, "wake": {"engine": "none"}}),
]


def _rooms(seconds: float) -> dict[str, np.ndarray | None]:
    return {QUIET: pink(seconds, -60.0), SPEECH: tv_speech(seconds, -30.0), SILENCE: None}


def _measure(folder: Path, url: str, room: Room, sound: np.ndarray | None,
             sections: dict) -> tuple[float | None, str]:
    """CPU s per audio s of one fresh daemon in the room; None and why if it cannot be."""
    config = folder / "agent.toml"
    config.write_text(config_text(url, **sections))
    daemon = DaemonProcess(folder, config, room)
    player = None
    try:
        if not daemon.ready(60):
            return None, f"the daemon did not get ready: {daemon.log[-400:]}"
        time.sleep(SETTLE_S)
        if sound is not None:
            player = room.play(sound)
            time.sleep(1.0)  # the player's own start-up
        cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
        time.sleep(SECONDS)
        cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
        if daemon.proc.poll() is not None:
            return None, "the daemon exited during the measurement"
        if player is not None and player.poll() is not None:
            return None, "the room's sound ended before the measurement did"
        return (cpu1 - cpu0) / (t1 - t0), ""
    finally:
        room.stop_playing()
        daemon.stop()


# the microphone as agent.audio.capture opens it (rate, period, 16-bit mono, a callback), and
# nothing else
BARE_STREAM = """
import sys, time, pyaudio
pa = pyaudio.PyAudio()
stream = pa.open(format=pyaudio.paInt16, channels=1, rate={rate}, input=True,
                 frames_per_buffer={rate} * {period_ms} // 1000,
                 stream_callback=lambda *a: (None, pyaudio.paContinue))
print("open", flush=True)
time.sleep({seconds})
"""


def _bare_stream(room: Room, sound: np.ndarray | None) -> tuple[float | None, str]:
    """CPU s per audio s of a process holding only an input stream on the room's path."""
    from agent.audio.settings import AudioSettings

    audio = AudioSettings()
    code = BARE_STREAM.format(rate=audio.input_rate, period_ms=audio.input_period_ms,
                              seconds=SECONDS + 30)
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **room.env},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if proc.stdout.readline().strip() != "open":
            return None, "the bare stream did not open"
        if sound is not None:
            room.play(sound)
        time.sleep(2.0)  # the stream's start-up
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(SECONDS)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        if proc.poll() is not None:
            return None, "the bare stream exited during the measurement"
        return (cpu1 - cpu0) / (t1 - t0), ""
    finally:
        room.stop_playing()
        proc.kill()
        proc.wait(10)


def _wake_model_alone(sound: np.ndarray | None, gate: bool) -> float:
    """CPU s per audio s of the default wake detector on the room's audio (this thread):
    with its voice-activity gate (as the daemon runs it) or the model on every step."""
    from agent.audio.base import FRAME_SAMPLES
    from agent.wake.factory import open_detector
    from agent.wake.settings import WakeSettings

    pcm = np.zeros(int(SECONDS * RATE), np.int16) if sound is None else sound
    detector = open_detector(WakeSettings(vad_gate=gate))
    try:
        frames = pcm[:len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
        t0 = time.thread_time()
        for frame in frames:
            detector.process(frame)
        return (time.thread_time() - t0) / (len(frames) * FRAME_SAMPLES / RATE)
    finally:
        detector.close()


def _plausible(values: list[float | None]) -> bool:
    return bool(values) and all(v is not None and 0 < v < CORES for v in values)


def rows() -> list[Row]:
    from agent.devserver import DevServer
    from benchmarks.room import KEY

    sounds = _rooms(SECONDS + 10)
    figures: dict[int, list[float | None]] = {i: [] for i in range(len(CASES))}
    alone: dict[tuple[str, bool], list[float]] = {(name, gate): [] for name in sounds
                                                  for gate in (False, True)}
    floor: list[float | None] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Room(Path(tmp)) as room, \
            DevServer(api_key=KEY) as server:
        for repeat in range(REPEATS):
            for i, (name, label, sections) in enumerate(CASES):
                folder = Path(tmp) / f"case{repeat}-{i}"
                folder.mkdir()
                value, why = _measure(folder, server.url, room, sounds[name], sections)
                figures[i].append(value)
                if why:
                    problems.append(f"{name}, {label}: {why}")
                print(f"  idle: {name}, {label}: "
                      f"{'-' if value is None else f'{value:.4f}'} {why}", file=sys.stderr)
            for (name, gate), values in alone.items():
                values.append(_wake_model_alone(sounds[name], gate))
            value, why = _bare_stream(room, sounds[QUIET])
            floor.append(value)
            if why:
                problems.append(f"the path's floor: {why}")
            print(f"  idle: the path's floor: {'-' if value is None else f'{value:.4f}'} {why}",
                  file=sys.stderr)
    for problem in problems:
        print(f"  idle: {problem}", file=sys.stderr)
    out = []
    for i, (name, label, sections) in enumerate(CASES):
        values = figures[i]
        ok = _plausible(values)
        shown = f"{median([v for v in values if v is not None]):.4f}" if ok else "impossible"
        target = TARGETS[name] if "wake" not in sections else None
        out.append(Row(f"daemon idle, {name}, {label}: CPU s/audio s (median of {len(values)})",
                       shown, "-" if target is None else f"<= {target}",
                       ok if target is None else ok and median(values) <= target))
    ok = _plausible(floor)
    out.append(Row(f"the path's floor, quiet room: a bare input stream, no daemon: CPU s/audio s "
                   f"(median of {len(floor)})", f"{median(floor):.4f}" if ok else "impossible", "-",
                   None if ok else False))
    if ok and _plausible(figures[0]):
        out.append(Row("daemon idle, quiet room, defaults, over the path's floor: CPU s/audio s",
                       f"{median(figures[0]) - median(floor):.4f}", "-", None))
    for (name, gate), values in alone.items():
        ok = _plausible(values)
        what = "the detector as the daemon runs it (voice gate)" if gate else "the model, every step"
        out.append(Row(f"wake alone, same audio, {name}: {what}: CPU s/audio s", f"{median(values):.4f}" if ok else "impossible", "-",
                       None if ok else False))
    return out


if __name__ == "__main__":
    for row in rows():
        print(row)

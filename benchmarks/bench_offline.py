"""Offline answers: commands recognised in noise, unknown sentences refused, end of speech to the
spoken answer, and the recogniser's CPU per audio second.

The speech is espeak-ng in four voices, each phrase at a speed drawn from 140-190 words a minute, with white noise 10 dB under the speech
(RMS over the whole phrase), each phrase between 0.2 s of quiet before and 1.5 s after. Each
phrasing is generated from templates with numbers and labels drawn by a fixed seed. A command
counts as recognised when what the recogniser heard means the same Command as what was said.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time

import numpy as np

from agent.audio.base import FRAME_SAMPLES, SAMPLE_RATE
from agent.daemon import DeviceBridge
from agent.audio.wavfile import WavSpeaker
from agent.offline.assistant import OfflineAssistant, understood
from agent.offline.grammar import LABELS, TEENS, TENS, UNITS
from agent.offline.intents import understand
from agent.offline.listener import CommandListener, Heard
from agent.offline.settings import OfflineSettings
from agent.speech import espeak
from agent.tools.toolbox import Toolbox
from benchmarks.common import Row, median

VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3")
SNR_DB = 10.0
SEED = 18

OTHER = ["what is the weather tomorrow", "play some music", "tell me a joke",
         "who is the president of france", "turn on the kitchen lights",
         "add milk to my shopping list", "how tall is mount everest", "call my mother",
         "what's on my calendar today", "remind me to buy bread", "open the garage door",
         "read me the news"]


def _number(rng: random.Random, low: int = 1, high: int = 59) -> str:
    n = rng.randint(low, high)
    if n < 10:
        return UNITS[n]
    if n < 20:
        return TEENS[n - 10]
    return TENS[n // 10] + ("" if n % 10 == 0 else " " + UNITS[n % 10])


def phrasings(rng: random.Random) -> list[str]:
    """One phrasing of each kind of command, numbers and labels drawn from rng."""
    label = rng.choice(LABELS)
    return [
        f"set a timer for {_number(rng)} minutes",
        f"set a {label} timer for {_number(rng)} minutes",
        f"set a timer for {_number(rng, 2, 9)} minutes and {_number(rng, 10, 50)} seconds",
        f"start a timer for {_number(rng, 10, 90)} seconds called {label}",
        f"a {_number(rng, 2, 30)} minute timer",
        "cancel the timer", f"cancel the {label} timer",
        f"how long is left on the {label} timer", "how much time is left",
        "what time is it", "what's the time",
        "stop", "turn it up", "volume down", "louder",
        f"set the volume to {_number(rng, 1, 10)}", f"volume to {_number(rng, 20, 90)} percent",
        "mute", f"hey jarvis set a timer for {_number(rng)} minutes", "alexa what time is it",
    ]


def _noisy(pcm: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The phrase in 10 dB white noise with quiet around it; (audio, sample where speech ends)."""
    lead, tail = np.zeros(SAMPLE_RATE // 5), np.zeros(SAMPLE_RATE * 3 // 2)
    x = np.concatenate([lead, pcm.astype(np.float64), tail])
    level = np.sqrt(np.mean(pcm.astype(np.float64) ** 2))
    x += rng.normal(0, level / 10 ** (SNR_DB / 20), len(x))
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16), len(lead) + _speech_end(pcm)


def _speech_end(pcm: np.ndarray) -> int:
    """Last sample above -40 dBFS in 10 ms blocks (espeak-ng ends its WAV with some quiet)."""
    block = SAMPLE_RATE // 100
    loud = [i for i in range(0, len(pcm) - block, block)
            if np.sqrt(np.mean(pcm[i:i + block].astype(np.float64) ** 2)) > 327]
    return (loud[-1] + block) if loud else len(pcm)


def corpus() -> list[tuple[str, np.ndarray, int]]:
    rng, noise = random.Random(SEED), np.random.default_rng(SEED)
    out = []
    for voice in VOICES:
        for text in phrasings(rng) + OTHER:
            audio, end = _noisy(espeak.speak(text, voice=voice, wpm=rng.randint(140, 190)), noise)
            out.append((text, audio, end))
    return out


def _listen(listener: CommandListener, audio: np.ndarray) -> tuple[Heard, int, float]:
    """(heard, samples fed until the end was decided, CPU seconds of hearing and recognising)."""
    listener.begin()
    t0, fed = time.process_time(), 0
    for i in range(0, len(audio), FRAME_SAMPLES):
        fed = i + FRAME_SAMPLES
        if listener.feed(audio[i:i + FRAME_SAMPLES]):
            break
    heard = listener.finish()
    return heard, fed, time.process_time() - t0


def rows() -> list[Row]:
    items = corpus()
    listener = CommandListener()
    right = refused = commands = others = 0
    cpu = audio_s = 0.0
    for text, audio, _ in items:
        heard, fed, spent = _listen(listener, audio)
        cpu, audio_s = cpu + spent, audio_s + fed / SAMPLE_RATE
        if understand(text) is None:
            others += 1
            refused += understood(heard) is None
        else:
            commands += 1
            right += understood(heard) == understand(text)
    latency = _latencies(items[:24])
    started, ticks_per_s, per_tick_s = _idle_online()
    return [
        Row(f"command recognised ({commands} phrasings, 4 voices, 10 dB noise)",
            f"{100 * right / commands:.1f} %", ">= 90 %", right / commands >= 0.9),
        Row(f"other sentence refused, gets the offline sentence ({others})",
            f"{100 * refused / others:.1f} %", ">= 90 %", refused / others >= 0.9),
        Row("end of speech -> spoken answer ready (median)", f"{median(latency) * 1000:.0f} ms",
            "<= 1000 ms", 0 < median(latency) <= 1.0),
        Row("recogniser CPU per audio second", f"{cpu / audio_s:.3f} s/s", "<= 0.25",
            0 < cpu / audio_s <= 0.25),
        Row(f"idle online {IDLE_S:g} s: offline threads, probes, recogniser loads", started, "none",
            started == "none"),
        Row(f"idle online: CPU of the offline wiring ({ticks_per_s:.0f} ticks/s x link check)",
            f"{ticks_per_s * per_tick_s:.6f} s/s", "<= 0.0001",
            0 < ticks_per_s * per_tick_s <= 0.0001),
    ]


IDLE_S = 5.0
OFFLINE_THREADS = ("offline-load", "link-check", "offline-answer")


def _idle_online() -> tuple[str, float, float]:
    """The daemon's conversation idle on the file backend (real-time silence, no wake word) with the
    project's server reachable: what of the offline part ran (threads seen, probes, a loaded
    recogniser), the loop's ticks per second, and the cost of the one thing it adds to each tick
    (the link-check deadline test), timed over many calls."""
    import threading

    from agent import config as config_mod
    from agent.daemon import Parts, build_conversation
    from agent.demo import write_wav
    from agent.devserver import DevServer
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="bench-offline-idle-"))
    write_wav(folder / "in.wav", np.zeros(int((IDLE_S + 2) * SAMPLE_RATE), np.int16))
    seen: set[str] = set()
    ticks = 0
    with DevServer(api_key="sk-bench") as server:
        config = config_mod.parse({
            "server": {"url": server.url},
            "audio": {"backend": "file", "input_file": str(folder / "in.wav"),
                      "output_file": str(folder / "out.wav"), "realtime": True},
            "wake": {"engine": "none"}}, folder / "agent.toml")
        parts = Parts()
        conversation = build_conversation(config, parts, api_key="sk-bench", trigger_on_start=True)
        tick = conversation._tick

        def counted(now: float) -> None:
            nonlocal ticks
            ticks += 1
            tick(now)

        conversation._tick = counted
        thread = threading.Thread(target=conversation.run, daemon=True)
        try:
            thread.start()
            # One session first (the link is then known up), then idle: nothing of offline runs.
            deadline = time.monotonic() + 30
            while conversation.state.value != "idle" or not server.sessions:
                assert time.monotonic() < deadline, "the bench's conversation never went idle"
                time.sleep(0.02)
            ticks, t0 = 0, time.monotonic()
            while time.monotonic() - t0 < IDLE_S:
                seen |= {t.name for t in threading.enumerate() if t.name in OFFLINE_THREADS}
                time.sleep(0.02)
            ticks_per_s = ticks / (time.monotonic() - t0)
            assistant, health = conversation.assistant, conversation.health
            loaded = assistant._listener is not None or assistant._loading is not None
            checks = health.check_due(float("inf"))
            now, n = time.monotonic(), 200_000
            c0 = time.perf_counter()
            for _ in range(n):
                conversation._check_link(now)
            per_tick = (time.perf_counter() - c0) / n
        finally:
            conversation.stop()
            thread.join(10)
            parts.close()
            shutil.rmtree(folder, ignore_errors=True)
    started = ", ".join(sorted(seen) + (["a probe due"] if checks else []) +
                        (["the recogniser"] if loaded else [])) or "none"
    return started, ticks_per_s, per_tick


def _latencies(items) -> list[float]:
    """End of speech to the answer's audio ready: the quiet the listener waits for (audio time),
    then acting and speaking (wall time). Recognition runs as the audio comes (CPU row), so
    nothing else is left at the end."""
    folder = tempfile.mkdtemp(prefix="bench-offline-")
    speaker = WavSpeaker(f"{folder}/out.wav")
    bridge = DeviceBridge(speaker, lambda *m: None, 50, ring_s=1, max_timers=50)
    assistant = OfflineAssistant(OfflineSettings(), Toolbox([], bridge, lambda p: p), bridge.timers)
    assistant.prepare()
    assistant.wait_ready()
    out = []
    try:
        for _, audio, end in items:
            assistant.begin()
            fed = 0
            for i in range(0, len(audio), FRAME_SAMPLES):
                fed = i + FRAME_SAMPLES
                if assistant.feed(audio[i:i + FRAME_SAMPLES]):
                    break
            assistant.voice._cache.clear()  # every answer made afresh, as a new sentence is
            t0 = time.perf_counter()
            assistant.answer()
            out.append(max(0, fed - end) / SAMPLE_RATE + time.perf_counter() - t0)
            for t in bridge.timers.list():
                bridge.timers.cancel(t.id)
    finally:
        bridge.close()
        speaker.close()
        shutil.rmtree(folder, ignore_errors=True)
    return out


if __name__ == "__main__":
    for r in rows():
        print(r)
